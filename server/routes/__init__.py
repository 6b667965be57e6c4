"""HTTP routes: thin adapters (parse, call one function, return a response model)."""
