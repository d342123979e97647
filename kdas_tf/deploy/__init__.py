"""The served model's exports: SavedModel with its input in the graph, LiteRT float and int8 files with their checks."""
