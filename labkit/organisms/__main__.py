"""``python -m labkit.organisms build [names]``: train the course's model organisms and write their adapters."""

from labkit.organisms import main

main()
