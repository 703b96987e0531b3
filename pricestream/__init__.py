"""Pricestream: the command line that assembles the roles (nothing imports it)."""
