"""Resolvers: arguments in, one domain call, result out."""
