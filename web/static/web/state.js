// The dashboard state as the protocol defines it (contract section 4), free of the DOM.
//
// applyChanges mirrors shared/core/changes.py `apply_changes` exactly: a key is a dotted
// path split on "."; a one-segment path replaces (or, with null, deletes) a whole channel; a
// longer path walks objects below the channel, copying each record on the way down; null
// deletes; a path below a missing parent is a conflict (the client must resync), except a
// delete, which is already done. Lists (orders) are only ever replaced whole.
//
// Keys are read and written as own properties only, so a hostile symbol such as "__proto__"
// (it matches the key pattern) is an ordinary key, as it is in a Python dict.
"use strict";

(function (global) {
  class ChangeConflict extends Error {}

  const hasOwn = (object, key) => Object.prototype.hasOwnProperty.call(object, key);

  function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }

  function getOwn(object, key) {
    return hasOwn(object, key) ? object[key] : undefined;
  }

  function assign(container, key, value) {
    if (value === null) {
      delete container[key];
    } else {
      Object.defineProperty(container, key, {
        value, writable: true, enumerable: true, configurable: true,
      });
    }
  }

  function assignBelow(container, parts, value, path) {
    const head = parts[0];
    if (parts.length === 1) {
      assign(container, head, value);
      return;
    }
    const child = getOwn(container, head);
    if (!isObject(child)) {
      if (value === null) return; // deleting below something absent: already deleted
      throw new ChangeConflict(`${path}: no object at ${JSON.stringify(head)}`);
    }
    const copied = Object.assign({}, child);
    assignBelow(copied, parts.slice(1), value, path);
    assign(container, head, copied);
  }

  /** Apply `changes` to `snapshot` in order and return it; throws ChangeConflict. */
  function applyChanges(snapshot, changes) {
    for (const path of Object.keys(changes)) {
      const value = changes[path];
      const parts = path.split(".");
      if (parts.length === 1) {
        assign(snapshot, parts[0], value);
        continue;
      }
      const container = getOwn(snapshot, parts[0]);
      if (!isObject(container)) {
        throw new ChangeConflict(`${path}: no object at ${JSON.stringify(parts[0])}`);
      }
      assignBelow(container, parts.slice(1), value, path);
    }
    return snapshot;
  }

  /**
   * The client's view of the stream: the state, its seq and epoch, and what each frame changed.
   * `receive` returns what the caller must do: "render" (with the changed channels and keys),
   * "ignore", "refresh" (a gap: ask the server for a snapshot), "recovered" (a resume worked:
   * the state stands, the missed updates follow), "status" (the feed's status changed) or
   * "reconnect" (the server is going away: reconnect after `afterMs`).
   *
   * Continuity (contract 4.1): an update applies to a state at S when base_seq <= S < seq, in
   * the same epoch; seq <= S is already held; anything else is a gap. A server without
   * base_seq: a change that does not apply is the gap.
   */
  class DashboardState {
    constructor() {
      this.data = null; // null until the first snapshot
      this.seq = 0;
      this.epoch = null;
      this.awaitingSnapshot = true;
      this.resuming = false; // this connection asked to resume
      this.outcome = "connecting"; // "live" (first snapshot), "recovered" or "resynced"
      this.reason = null; // why the last resync was one
      this.feed = null; // the last status frame
      this.updates = 0;
      this.resyncs = 0;
      this.gaps = 0;
    }

    /** The query parameters of a resume (since, epoch), or null if it cannot resume. */
    resumeQuery() {
      if (this.data === null || this.epoch === null) return null;
      return { since: String(this.seq), epoch: this.epoch };
    }

    reset(resume) {
      // A new connection: keep showing the old data until its snapshot (or recovered) comes.
      this.awaitingSnapshot = true;
      this.resuming = Boolean(resume);
    }

    receive(frame) {
      switch (frame.type) {
        case "snapshot": return this.snapshot(frame);
        case "update": return this.update(frame);
        case "recovered": return this.recovered(frame);
        case "status":
          this.feed = frame;
          return { action: "status" };
        case "shutdown":
          return { action: "reconnect", afterMs: Math.max(0, Number(frame.reconnect_after_ms) || 0) };
        default: return { action: "ignore" };
      }
    }

    snapshot(frame) {
      const first = this.data === null;
      this.data = frame.data;
      this.seq = frame.seq;
      this.epoch = frame.epoch === undefined || frame.epoch === null ? null : String(frame.epoch);
      this.awaitingSnapshot = false;
      if (frame.recovered === false) {
        this.outcome = "resynced";
        this.reason = String(frame.reason || "unknown");
      } else if (first) {
        this.outcome = "live";
        this.reason = null;
      } else {
        this.outcome = "resynced";
        if (this.resuming) this.reason = "unknown";
      }
      if (!first) this.resyncs += 1;
      this.resuming = false;
      return { action: "render", snapshot: true, dirty: null };
    }

    recovered(frame) {
      const same = this.resuming && this.data !== null && frame.since === this.seq
        && frame.epoch === this.epoch;
      this.resuming = false;
      if (!same) return this.gap("a recovered marker for another seq or epoch");
      this.awaitingSnapshot = false;
      this.outcome = "recovered";
      this.reason = null;
      return { action: "recovered" };
    }

    update(frame) {
      // An update before the snapshot, or after a gap, applies to nothing we hold.
      if (this.awaitingSnapshot || this.data === null) return { action: "ignore" };
      if (frame.epoch !== undefined && frame.epoch !== null && this.epoch !== null
          && String(frame.epoch) !== this.epoch) {
        return this.gap(`an update of epoch ${frame.epoch}`);
      }
      if (!(frame.seq > this.seq)) return { action: "ignore" }; // already applied
      if (typeof frame.base_seq === "number" && frame.base_seq > this.seq) {
        return this.gap(`update ${frame.base_seq}->${frame.seq} on state ${this.seq}`);
      }
      try {
        applyChanges(this.data, frame.changes);
      } catch (error) {
        if (!(error instanceof ChangeConflict)) throw error;
        return this.gap(error.message);
      }
      this.seq = frame.seq;
      this.updates += 1;
      return { action: "render", snapshot: false, dirty: dirtyOf(frame.changes) };
    }

    gap(reason) {
      this.awaitingSnapshot = true;
      this.gaps += 1;
      this.reason = "gap";
      return { action: "refresh", reason };
    }
  }

  /** What is down according to a status frame, in words; empty when all is well. */
  function feedProblems(status) {
    if (!status) return [];
    if (!status.worker || !status.worker.up) return ["worker"];
    const backends = status.backends || {};
    return Object.keys(backends).sort().filter((name) => !backends[name]);
  }

  /** channel -> Set of the entity keys changed (null: the whole channel). */
  function dirtyOf(changes) {
    const dirty = new Map();
    for (const path of Object.keys(changes)) {
      const dot = path.indexOf(".");
      const channel = dot < 0 ? path : path.slice(0, dot);
      if (dot < 0) {
        dirty.set(channel, null);
        continue;
      }
      if (dirty.has(channel) && dirty.get(channel) === null) continue;
      const rest = path.slice(dot + 1);
      const next = rest.indexOf(".");
      const key = next < 0 ? rest : rest.slice(0, next);
      if (!dirty.has(channel)) dirty.set(channel, new Set());
      dirty.get(channel).add(key);
    }
    return dirty;
  }

  global.DashboardProtocol = {
    applyChanges, ChangeConflict, DashboardState, dirtyOf, feedProblems,
  };
})(window);
