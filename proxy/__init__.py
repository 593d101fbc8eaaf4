"""Nescio's OpenAI-compatible guard proxy: FastAPI in front of a vLLM (or any OpenAI) server."""
