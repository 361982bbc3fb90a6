"""MoonTV delivery platform: Pulumi components and the pure modules they share."""
