"""LLM backends (``provider:model`` strings), the completion cache, and the generate stage.

Import the pieces from their modules: ``emoguide.llm.registry.get_backend``,
``emoguide.llm.generate.generate``. Nothing heavy is imported here.
"""
