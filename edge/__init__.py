"""The edge agent: badges, desk sensors and door pins on a Raspberry Pi."""
