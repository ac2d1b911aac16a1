// Number and time formatting for the dashboard: prices by magnitude, signed PnL, compact volume.
"use strict";

(function (global) {
  const cache = new Map();

  function formatter(digits) {
    let f = cache.get(digits);
    if (!f) {
      f = new Intl.NumberFormat("en-US", {
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      });
      cache.set(digits, f);
    }
    return f;
  }

  const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });
  const quantity = new Intl.NumberFormat("en-US", { maximumFractionDigits: 8 });

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);

  /** Decimals that show a price the way exchanges quote it (BTC 2, DOGE 6). */
  function priceDigits(value) {
    const size = Math.abs(value);
    if (size >= 1000) return 2;
    if (size >= 10) return 3;
    if (size >= 1) return 4;
    return 6;
  }

  function price(value, digits) {
    if (!isNumber(value)) return "–";
    return formatter(digits === undefined ? priceDigits(value) : digits).format(value);
  }

  function money(value) {
    return isNumber(value) ? formatter(2).format(value) : "–";
  }

  function signed(value) {
    if (!isNumber(value)) return "–";
    const text = formatter(2).format(value);
    return value > 0 ? `+${text}` : text;
  }

  function percent(value) {
    if (!isNumber(value)) return "–";
    const text = `${formatter(2).format(value * 100)} %`;
    return value > 0 ? `+${text}` : text;
  }

  function qty(value) {
    return isNumber(value) ? quantity.format(value) : "–";
  }

  function volume(value) {
    return isNumber(value) ? compact.format(value) : "–";
  }

  /** "12:00:01" (UTC) from an RFC 3339 timestamp. */
  function clock(timestamp) {
    const ms = Date.parse(timestamp);
    if (Number.isNaN(ms)) return "–";
    return new Date(ms).toISOString().slice(11, 19);
  }

  /** "up", "down" or "flat": the CSS class of a signed number. */
  function signClass(value) {
    if (!isNumber(value) || value === 0) return "flat";
    return value > 0 ? "up" : "down";
  }

  global.DashboardFormat = {
    clock, isNumber, money, percent, price, priceDigits, qty, signClass, signed, volume,
  };
})(window);
