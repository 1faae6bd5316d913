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
  },
});
