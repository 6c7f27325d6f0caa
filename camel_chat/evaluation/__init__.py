"""Evaluation of served models: KAgentBench inference and scoring (``kagentbench``)."""
