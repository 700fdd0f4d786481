"""The witness suite: Microsoft's SDKs in other languages than Python, unmodified, against a
real trio (python3 dev.py witness)."""
