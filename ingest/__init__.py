"""Collectors: vendor ticks in, validated ticks onto the bus, bad input to the dead-letter."""
