"""The architecture search: the controller (LSTM and random), the budget's cost table, the rounds, the KerasTuner
Oracle and Tuner, summaries."""
