// One symbol's 1-minute candles: history from /api/v1/history, then the live last price.
"use strict";

(function (global) {
  const BUCKET_S = 60; // interval=1m
  const HISTORY_CANDLES = 500; // about eight hours of 1-minute candles

  /** Seconds since the epoch of an RFC 3339 timestamp, or NaN. */
  const epochSeconds = (timestamp) => Date.parse(timestamp) / 1000;

  class SymbolChart {
    constructor(container, note, label, historyPath, signal) {
      this.container = container;
      this.note = note;
      this.label = label;
      this.historyPath = historyPath;
      this.signal = signal;
      this.chart = null;
      this.series = null;
      this.symbol = null;
      this.bars = new Map(); // bucket start (s) -> {time, open, high, low, close}
      this.lastTime = 0;
      this.generation = 0; // a newer selection makes a pending history fetch stale
    }

    ensureChart() {
      if (this.chart) return;
      const charts = global.LightweightCharts;
      this.chart = charts.createChart(this.container, {
        autoSize: true,
        layout: {
          background: { type: "solid", color: "#131722" },
          textColor: "#b2b5be",
          fontFamily: "DejaVu Sans, system-ui, sans-serif",
        },
        grid: { vertLines: { color: "#1f2430" }, horzLines: { color: "#1f2430" } },
        rightPriceScale: { borderColor: "#2a2e39" },
        timeScale: { borderColor: "#2a2e39", timeVisible: true, secondsVisible: false },
        crosshair: { mode: 0 },
      });
      this.series = this.chart.addSeries(charts.CandlestickSeries, {
        upColor: "#26a69a", downColor: "#ef5350", borderVisible: false,
        wickUpColor: "#26a69a", wickDownColor: "#ef5350",
      });
    }

    /** Called when the user picks a symbol: draw its history, then follow it. */
    select(symbol, lastPrice) {
      this.ensureChart();
      this.symbol = symbol;
      this.bars = new Map();
      this.lastTime = 0;
      this.generation += 1;
      this.label.textContent = symbol;
      this.setPrecision(lastPrice);
      this.series.setData([]);
      this.publish();
      this.note.textContent = "Loading history…";
      this.loadHistory(symbol, this.generation);
    }

    setPrecision(lastPrice) {
      if (typeof lastPrice !== "number") return;
      const digits = global.DashboardFormat.priceDigits(lastPrice);
      this.series.applyOptions({
        priceFormat: { type: "price", precision: digits, minMove: 10 ** -digits },
      });
    }

    async loadHistory(symbol, generation) {
      const query = new URLSearchParams({
        type: "market_data", symbol, interval: "1m", limit: String(HISTORY_CANDLES),
      });
      let candles = [];
      let problem = null;
      try {
        const response = await fetch(`${this.historyPath}?${query}`, {
          credentials: "same-origin", headers: { Accept: "application/json" },
          signal: this.signal,
        });
        if (response.ok) {
          candles = (await response.json()).data || [];
        } else {
          problem = `history unavailable (HTTP ${response.status}); showing live prices`;
        }
      } catch (error) {
        if (this.signal.aborted) return; // the page is leaving
        problem = "history unavailable; showing live prices";
      }
      if (generation !== this.generation) return; // the user picked another symbol meanwhile
      for (const candle of candles) {
        const time = epochSeconds(candle.time);
        // A live bar already in the map is newer than the recorded one: keep it.
        if (!Number.isFinite(time) || this.bars.has(time)) continue;
        this.bars.set(time, {
          time, open: candle.open, high: candle.high, low: candle.low, close: candle.close,
        });
      }
      const data = [...this.bars.values()].sort((a, b) => a.time - b.time);
      this.lastTime = data.length ? data[data.length - 1].time : 0;
      this.series.setData(data);
      this.chart.timeScale().scrollToRealTime();
      this.note.textContent = problem || (candles.length
        ? `${candles.length} recorded candles, then live.`
        : "No recorded history yet; showing live prices.");
      this.publish();
    }

    /** Called for each market_data record of the selected symbol that changed. */
    tick(record) {
      if (!this.series || !record || typeof record.last_price !== "number") return;
      let time = epochSeconds(record.updated_at);
      if (!Number.isFinite(time)) time = Date.now() / 1000;
      const bucket = Math.floor(time / BUCKET_S) * BUCKET_S;
      if (bucket < this.lastTime) return; // older than what is drawn
      const price = record.last_price;
      const bar = this.bars.get(bucket);
      const next = bar
        ? { time: bucket, open: bar.open, high: Math.max(bar.high, price),
          low: Math.min(bar.low, price), close: price }
        : { time: bucket, open: price, high: price, low: price, close: price };
      this.bars.set(bucket, next);
      this.lastTime = bucket;
      this.series.update(next);
      this.publish();
    }

    publish() {
      // For people and tests: how many bars are drawn, and for which symbol.
      this.container.dataset.bars = String(this.bars.size);
      this.container.dataset.symbol = this.symbol || "";
    }
  }

  global.SymbolChart = SymbolChart;
})(window);
