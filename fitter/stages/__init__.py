"""One package per stage (`<name>/`, its helpers inside it, its contract in `<name>/contract.py`);
`registry.py` lists them in run order."""
