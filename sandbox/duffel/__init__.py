"""A wire-compatible stand-in for Duffel's flights API: store, rendering, offers and app."""
