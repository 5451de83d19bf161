//! A local DPS emulator.
