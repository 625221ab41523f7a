"""The synthetic city (合成城市). Imports only ``kit``; talks to the platform as a city would."""
