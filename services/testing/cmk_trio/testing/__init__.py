"""Test support for other projects: a running trio as a pytest fixture."""
