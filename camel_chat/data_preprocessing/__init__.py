"""data_preprocessing."""
