//! DPS wire types, SAS tokens and the REST client.
