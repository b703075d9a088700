"""Generated hostile inputs (Hypothesis): argument vectors, data files and tampered studies, run in-process."""
