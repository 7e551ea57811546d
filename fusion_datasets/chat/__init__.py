"""Chat backends: an LLM in this process (transformers) or behind an OpenAI-compatible server.

Below the steps that talk to a model: the LLM stages (fusion, QA, the judges of ``eval``) and the served
experts both build on it, and it imports neither.
"""
