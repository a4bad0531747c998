"""Pure Python and numpy building blocks shared by every layer. No torch, no Qt."""
