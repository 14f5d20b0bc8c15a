"""`python -m smoke_platform.cli`."""

from smoke_platform.cli import main

main()
