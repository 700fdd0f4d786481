"""The speech resource store: speech resources, their encryption settings, and the data
the seed lists (Custom Commands configuration, LUIS keys), always under envelope encryption."""
