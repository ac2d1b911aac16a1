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
   * The client's view of the stream: the state, its seq, and what each frame changed.
   * `receive` returns what the caller must do: "render" (with the changed channels and keys),
   * "ignore", or "refresh" (the update did not apply: ask the server for a snapshot).
   */
  class DashboardState {
    constructor() {
      this.data = null; // null until the first snapshot
      this.seq = 0;
      this.awaitingSnapshot = true;
      this.updates = 0;
      this.resyncs = 0;
    }

    reset() {
      // A new connection: keep showing the old data until its snapshot replaces it.
      this.awaitingSnapshot = true;
    }

    receive(frame) {
      if (frame.type === "snapshot") {
        this.data = frame.data;
        this.seq = frame.seq;
        this.awaitingSnapshot = false;
        return { action: "render", snapshot: true, dirty: null };
      }
      if (frame.type !== "update") return { action: "ignore" };
      // An update before the snapshot, or after a conflict, applies to nothing we hold.
      if (this.awaitingSnapshot || this.data === null) return { action: "ignore" };
      if (!(frame.seq > this.seq)) return { action: "ignore" }; // already applied
      try {
        applyChanges(this.data, frame.changes);
      } catch (error) {
        if (!(error instanceof ChangeConflict)) throw error;
        this.awaitingSnapshot = true;
        this.resyncs += 1;
        return { action: "refresh", reason: error.message };
      }
      this.seq = frame.seq;
      this.updates += 1;
      return { action: "render", snapshot: false, dirty: dirtyOf(frame.changes) };
    }
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

  global.DashboardProtocol = { applyChanges, ChangeConflict, DashboardState, dirtyOf };
})(window);
