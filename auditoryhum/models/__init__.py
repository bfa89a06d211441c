"""The only code that imports torch, transformers or sentence-transformers."""
