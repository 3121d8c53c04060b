"""An example Django REST framework project throttled by ratelimit.contrib.drf."""
