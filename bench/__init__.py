"""The benchmark suite (`python3 dev.py bench`); not part of the installed package."""
