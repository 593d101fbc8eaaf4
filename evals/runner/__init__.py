"""Send probes to OpenAI-compatible systems and record every answer, resumably."""
