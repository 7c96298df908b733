"""The JSON API's routes, one module per audience: enterprises (and the calculator), policies, admin, ops."""
