"""Dataset cards and Hub publishing."""
