"""The compile stages, one module each, each a function ``State -> State`` (``run``) plus what it needs.

``compiler/pipeline.py`` lists them in order; ``state.State`` is the value they pass along. Each stage module also
holds that stage's public single-stage entry point (``inspect_model``, ``export_model``, ``optimize_model``,
``lower_precision``, ``build_engine``, ``validate_artifacts``), which the CLI's subcommands call.
"""
