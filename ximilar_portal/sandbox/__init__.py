"""A local server that speaks Ximilar's protocol, for development and tests.

Run it with `python -m ximilar_portal.sandbox`, or in tests with
`server.SandboxServer(port=0).start()`. It uses the standard library and
Pillow only, never Django.

    server.py      HTTP plumbing, tokens, faults, request log, control endpoints
    faults.py      fault settings and the per-token rate limiter
    routes.py      path and method to handler
    protocol.py    records, per-record _status, status, options
    services.py    account, authorize, recognition, detection, dominant colours
    tagging.py     generic, fashion and home-decor tags
    similarity.py  collections: insert, get, update, delete, visualKNN, ...
    filters.py     Mongo-style metadata filters
    imaging.py     _base64/_url to pixels; features and measurements
    colors.py      dominant colours (median cut + k-means)
    palette.py     CSS3 and simple colour names
    standins.py    deterministic stand-ins for trained models
"""
