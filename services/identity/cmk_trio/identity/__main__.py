"""`python -m cmk_trio.identity`: the identity service, configured by CMK_* variables.
(`cmk serve identity` does the same with flags.)"""

from cmk_trio.cli.main import main

if __name__ == "__main__":
    main(["serve", "identity"])
