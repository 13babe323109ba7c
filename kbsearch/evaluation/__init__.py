"""Measuring deflection on a labelled set: `evaluate` (a fresh index built from an archive, then
asked the questions) and `replay` (production replayed: outcomes of the first half fed back).

Clients of the front door, like the CLI: each builds a `kbsearch.KnowledgeBase` and asks it.
"""
