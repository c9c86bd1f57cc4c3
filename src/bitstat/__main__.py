"""`python -m bitstat`: the same command line as `bitstat`."""

from bitstat.cli import main

if __name__ == "__main__":
    main(prog_name="bitstat")
