"""``python -m service.cli``: the same command line as the ``policyfit`` script."""

from service.cli.main import main

main()
