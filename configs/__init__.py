"""The shipped configs, installed as the package data ``protoexplain.configs``.

Commands take a config by path or by name (``synthetic_protopnet``, with or without
``.yaml``); see :func:`protoexplain.config_files.find_config`.
"""
