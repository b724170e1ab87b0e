"""A STAC API 1.0 over the index: the same searches as esg-search, answered as STAC items.

No storage here: every answer comes from `IndexService.search`, as esg-search's do, so both APIs
agree on every index, master or replica.

    vocabulary.py   collections (one per project), property names, facet sets
    filters.py      CQL2 (text and JSON) → the engine's constraints and Lucene nodes
    search.py       item-search parameters (GET and POST) → SearchRequest; fields, sortby
    items.py        Dataset/File records → STAC items and collections
    routes.py       the HTTP handlers the index app mounts under /stac
"""
