"""``python -m service``: the same command line as the ``policyfit`` script."""

from service.main import main

main()
