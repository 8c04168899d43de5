"""The seed's examples as importable handlers: used by the twistd plugins and examples/."""
