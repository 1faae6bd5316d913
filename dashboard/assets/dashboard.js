// Browser-side helpers for callbacks that need no server round trip.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
  dashboard: {
    // Open or close the collapsed navbar on narrow screens.
    toggle: function (clicks, isOpen) {
      return !isOpen;
    },
    // New filters or a new snapshot: drop the grid's cached blocks so it asks the server again.
    purgeGrid: function () {
      dash_ag_grid.getApiAsync("bookings-grid").then(function (api) {
        api.purgeInfiniteCache();
      });
      return Date.now();
    },
    // The sort kept in the query string, applied to the grid (after a reload, Back, a link).
    applySort: function (sort) {
      var parts = (sort || "").split(":");
      dash_ag_grid.getApiAsync("bookings-grid").then(function (api) {
        var current = api.getColumnState().filter(function (c) { return c.sort; });
        var wanted = parts[0] ? parts[0] + ":" + (parts[1] === "asc" ? "asc" : "desc") : "";
        var now = current.length ? current[0].colId + ":" + current[0].sort : "";
        if (wanted !== now) {
          api.applyColumnState({
            state: wanted ? [{ colId: parts[0], sort: parts[1] === "asc" ? "asc" : "desc" }] : [],
            defaultState: { sort: null },
          });
        }
      });
    },
  },
  // Controls <-> query string (components/urlstate.py).
  urlstate: {
    read: function () {
      var ctx = window.dash_clientside.callback_context;
      var states = ctx.states_list;
      var key = urlstateKey(states);
      var onlyUrl = ctx.triggered.every(function (t) { return t.prop_id === "url.search"; });
      if (!onlyUrl || !(key in URLSTATE_DEFAULTS)) {
        var defaults = {};
        states.forEach(function (s) { defaults[urlstateQueryKey(s, states)] = s.value; });
        URLSTATE_DEFAULTS[key] = defaults;
      }
      var known = URLSTATE_DEFAULTS[key];
      var params = new URLSearchParams(window.location.search);
      return states.map(function (s) {
        var q = urlstateQueryKey(s, states);
        var wanted = params.has(q) ? urlstateDecode(params.getAll(q), known[q]) : known[q];
        return urlstateSame(wanted, s.value) ? window.dash_clientside.no_update : wanted;
      });
    },
    write: function () {
      var ctx = window.dash_clientside.callback_context;
      var inputs = ctx.inputs_list;
      var known = URLSTATE_DEFAULTS[urlstateKey(inputs)];
      if (!known) return;
      var params = new URLSearchParams(window.location.search);
      inputs.forEach(function (i) {
        var q = urlstateQueryKey(i, inputs);
        params.delete(q);
        if (urlstateSame(i.value, known[q])) return;
        urlstateEncode(i.value).forEach(function (v) { params.append(q, v); });
      });
      var text = params.toString();
      // The same filters written another way (order, escapes) are no new history entry.
      if (urlstateCanonical(text) !== urlstateCanonical(window.location.search)) {
        window.dash_clientside.set_props("url", { search: text ? "?" + text : "" });
      }
    },
  },
});

// The layout's value of each control, per page (keyed by its controls' ids).
var URLSTATE_DEFAULTS = {};

function urlstateKey(items) {
  return items.map(function (i) { return urlstateQueryKey(i, items); }).join("|");
}

// A control's query key: its component id, or "id.property" when the page syncs two
// properties of one component (a date range's start and end).
function urlstateQueryKey(item, items) {
  var twice = items.filter(function (i) { return i.id === item.id; }).length > 1;
  return twice ? item.id + "." + item.property : item.id;
}

function urlstateCanonical(search) {
  var params = new URLSearchParams(search);
  params.sort();
  return params.toString();
}

function urlstateEmpty(value) {
  return value === null || value === undefined || value === "" ||
    (Array.isArray(value) && value.length === 0);
}

function urlstateSame(a, b) {
  if (urlstateEmpty(a) && urlstateEmpty(b)) return true;
  return JSON.stringify(a) === JSON.stringify(b);
}

function urlstateEncode(value) {
  if (urlstateEmpty(value)) return [""];
  if (Array.isArray(value)) return value.map(String);
  return [String(value)];
}

// Query values back to the type of the control's layout value.
function urlstateDecode(values, model) {
  var present = values.filter(function (v) { return v !== ""; });
  if (Array.isArray(model)) return present;
  var text = present.length ? present[0] : null;
  if (text === null) return Array.isArray(model) ? [] : null;
  if (typeof model === "boolean") return text === "true";
  if (typeof model === "number") {
    var n = Number(text);
    return isNaN(n) ? model : n;
  }
  return text;
}
