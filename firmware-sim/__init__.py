"""The hardware in software: LD2410 radars, NFC badges, door pins, and a coworking day."""
