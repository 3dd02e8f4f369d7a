"""golfmodel.data: the data plane — shards (`shards`), download (`hub`), tokenisation (`tokenise`),
bigram baseline (`bigram`) and the `golf data` subcommands (`cli`).

Submodules are imported where used (the hub client and `datasets` are slow to import).
"""
