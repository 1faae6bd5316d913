"""Real airports and airlines the generated history and the Duffel stand-in draw from."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import airportsdata

# (IATA, relative traffic weight): large hubs on every continent, weighted roughly by size.
HUBS: tuple[tuple[str, int], ...] = (
    ("ATL", 10),
    ("LAX", 9),
    ("ORD", 8),
    ("DFW", 8),
    ("DEN", 7),
    ("JFK", 9),
    ("SFO", 7),
    ("SEA", 5),
    ("LAS", 5),
    ("MCO", 5),
    ("MIA", 6),
    ("BOS", 5),
    ("EWR", 5),
    ("IAH", 5),
    ("YYZ", 5),
    ("YVR", 3),
    ("MEX", 4),
    ("CUN", 4),
    ("GRU", 4),
    ("BOG", 3),
    ("SCL", 2),
    ("EZE", 2),
    ("LHR", 10),
    ("LGW", 5),
    ("CDG", 8),
    ("AMS", 7),
    ("FRA", 7),
    ("MAD", 6),
    ("BCN", 6),
    ("FCO", 5),
    ("MUC", 5),
    ("ZRH", 4),
    ("DUB", 4),
    ("LIS", 4),
    ("IST", 6),
    ("CPH", 3),
    ("ARN", 3),
    ("OSL", 3),
    ("VIE", 3),
    ("ATH", 3),
    ("DXB", 8),
    ("DOH", 5),
    ("AUH", 3),
    ("JNB", 3),
    ("CPT", 2),
    ("CAI", 2),
    ("NBO", 2),
    ("DEL", 5),
    ("BOM", 4),
    ("SIN", 6),
    ("HKG", 5),
    ("BKK", 5),
    ("KUL", 3),
    ("NRT", 4),
    ("HND", 5),
    ("ICN", 5),
    ("PEK", 4),
    ("PVG", 4),
    ("SYD", 5),
    ("MEL", 3),
    ("AKL", 2),
    ("HNL", 2),
)

# Airports that share an IATA city code with others.
CITY_CODES = {
    "LHR": "LON",
    "LGW": "LON",
    "JFK": "NYC",
    "EWR": "NYC",
    "ORD": "CHI",
    "IAH": "HOU",
    "YYZ": "YTO",
    "GRU": "SAO",
    "EZE": "BUE",
    "FCO": "ROM",
    "ARN": "STO",
    "DXB": "DXB",
    "NRT": "TYO",
    "HND": "TYO",
    "ICN": "SEL",
    "PEK": "BJS",
    "PVG": "SHA",
    "CDG": "PAR",
    "MCO": "ORL",
    "DFW": "DFW",
    "IST": "IST",
}

# (IATA, name, Duffel id). Ids for carriers Duffel's recorded payloads name
# are the recorded ones; the rest follow the same format.
AIRLINES: tuple[tuple[str, str, str], ...] = (
    ("BA", "British Airways", "arl_00009VME7DBKeMags5CliQ"),
    ("AA", "American Airlines", "arl_00009VME7DAGiJjwomhv32"),
    ("DL", "Delta Air Lines", "arl_00009VME7DBgd2sGtBN3HF"),
    ("UA", "United Airlines", "arl_00009VME7DDoV8ZkzmMkaN"),
    ("LH", "Lufthansa", "arl_00009VME7DCOaPRQvNhcMu"),
    ("AF", "Air France", "arl_00009VME7DAGiJjwomhv2x"),
    ("KL", "KLM", "arl_00009VME7DCOaPRQvNhcMa"),
    ("EK", "Emirates", "arl_00009VME7DC2bj9quHXKoQ"),
    ("QR", "Qatar Airways", "arl_00009VME7DD3rNUNH6CNuf"),
    ("SQ", "Singapore Airlines", "arl_00009VME7DDXD9ZagXfvZT"),
    ("CX", "Cathay Pacific", "arl_00009VME7DBgd2sGtBN3GD"),
    ("NH", "ANA", "arl_00009VME7DA8fTeyuuVcZB"),
    ("QF", "Qantas", "arl_00009VME7DD3rNUNH6CNul"),
    ("AC", "Air Canada", "arl_00009VME7DAGiJjwomhv2V"),
    ("IB", "Iberia", "arl_00009VME7DC2bj9quHXKpF"),
    ("TK", "Turkish Airlines", "arl_00009VME7DDoV8ZkzmMkaH"),
    ("EY", "Etihad Airways", "arl_00009VME7DC2bj9quHXKoY"),
    ("ZZ", "Duffel Airways", "arl_00009VME7D6ivUu8dn35WK"),
)

AIRLINE_REGIONS: dict[str, tuple[str, ...]] = {
    # Which carriers plausibly fly out of a continent; long-haul mixes both ends.
    "NA": ("AA", "DL", "UA", "AC"),
    "SA": ("AA", "DL", "UA", "IB"),
    "EU": ("BA", "LH", "AF", "KL", "IB", "TK"),
    "AF": ("EK", "QR", "TK", "BA", "AF"),
    "AS": ("SQ", "CX", "NH", "EK", "QR", "EY"),
    "ME": ("EK", "QR", "EY", "TK"),
    "OC": ("QF", "SQ", "CX"),
}

_CONTINENT = {
    "US": "NA",
    "CA": "NA",
    "MX": "NA",
    "BR": "SA",
    "CO": "SA",
    "CL": "SA",
    "AR": "SA",
    "AE": "ME",
    "QA": "ME",
    "TR": "EU",
    "ZA": "AF",
    "EG": "AF",
    "KE": "AF",
    "IN": "AS",
    "SG": "AS",
    "HK": "AS",
    "TH": "AS",
    "MY": "AS",
    "JP": "AS",
    "KR": "AS",
    "CN": "AS",
    "AU": "OC",
    "NZ": "OC",
}


@dataclass(frozen=True)
class Airport:
    iata: str
    icao: str
    name: str
    city: str
    city_code: str
    country: str
    lat: float
    lon: float
    tz: str

    @property
    def duffel_id(self) -> str:
        return f"arp_{self.iata.lower()}_{self.country.lower()}"

    @property
    def continent(self) -> str:
        return _CONTINENT.get(self.country, "EU")


@cache
def airports() -> dict[str, Airport]:
    """The hub airports, keyed by IATA code, with real names, coordinates and time zones."""
    data = airportsdata.load("IATA")
    result = {}
    for code, _weight in HUBS:
        row = data[code]
        result[code] = Airport(
            iata=code,
            icao=row["icao"],
            name=row["name"],
            city=row["city"],
            city_code=CITY_CODES.get(code, code),
            country=row["country"],
            lat=float(row["lat"]),
            lon=float(row["lon"]),
            tz=row["tz"],
        )
    return result


def great_circle_km(a: Airport, b: Airport) -> float:
    """Distance along the earth's surface; used for flight times and prices."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def flight_minutes(distance_km: float) -> int:
    """Block time: taxi and climb allowance plus cruise at ~830 km/h, to 5 minutes."""
    return int(round((35 + distance_km / 830 * 60) / 5) * 5)
