"""The architecture search: the controller (LSTM and random), the budget's cost table, the KerasTuner Oracle and Tuner, summaries."""
