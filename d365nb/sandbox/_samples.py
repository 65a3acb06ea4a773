"""Word lists the seed draws from: company parts, cities, streets, people, job titles."""

from __future__ import annotations

__all__ = [
    "CITIES",
    "CORE",
    "FIRST",
    "LAST",
    "OPP_TOPICS",
    "PREFIX",
    "STREETS",
    "SUFFIX",
    "TITLES",
]

# fmt: off
PREFIX: tuple[str, ...] = (
    "Contoso", "Fabrikam", "Adventure", "Northwind", "Litware", "Proseware", "Tailspin",
    "Wingtip", "Alpine", "Blue Yonder", "Coho", "Fourth Coffee", "Graphic Design", "Humongous",
    "Lucerne", "Margie's", "Nod", "Relecloud", "Southridge", "Trey", "VanArsdel", "Wide World",
    "Woodgrove", "Datum", "Consolidated", "City Power", "Bellows", "Best For You", "Coho Winery",
    "Fabrikam Residences", "Lamna", "Munson's", "Olympic", "Phone Company", "Contoso Pharma",
    "Tailwind", "Trey Research", "Baldwin", "Kadence", "Liberty", "Northridge", "Summit",
    "Cascade", "Evergreen", "Harbor", "Ironwood", "Juniper", "Keystone", "Meridian", "Pinnacle",
)
CORE: tuple[str, ...] = (
    "Traders", "Works", "Cycles", "Foods", "Systems", "Motors", "Labs", "Partners", "Logistics",
    "Energy", "Health", "Bank", "Insurance", "Media", "Consulting", "Retail", "Outfitters",
    "Airlines", "Coffee", "Winery", "Electric", "Pharma", "Software", "Toys", "Farms", "Textiles",
    "Robotics", "Realty", "Studios", "Furniture",
)
SUFFIX: tuple[str, ...] = (
    "", " Inc.", " Ltd", " LLC", " GmbH", " Corp.", " & Co", " Group", " AG", " SA",
)
# city, country, latitude, longitude, postal prefix, area code
CITIES: tuple[tuple[str, str, float, float, str, str], ...] = (
    ("Seattle", "United States", 47.61, -122.33, "981", "206"),
    ("Redmond", "United States", 47.67, -122.12, "980", "425"),
    ("New York", "United States", 40.71, -74.01, "100", "212"),
    ("Chicago", "United States", 41.88, -87.63, "606", "312"),
    ("Austin", "United States", 30.27, -97.74, "787", "512"),
    ("Toronto", "Canada", 43.65, -79.38, "M5V", "416"),
    ("London", "United Kingdom", 51.51, -0.13, "EC1", "020"),
    ("Berlin", "Germany", 52.52, 13.4, "101", "030"),
    ("Paris", "France", 48.86, 2.35, "750", "01"), ("Madrid", "Spain", 40.42, -3.7, "280", "91"),
    ("Amsterdam", "Netherlands", 52.37, 4.9, "101", "020"),
    ("Zurich", "Switzerland", 47.38, 8.54, "800", "044"),
    ("Tokyo", "Japan", 35.68, 139.69, "100", "03"),
    ("Sydney", "Australia", -33.87, 151.21, "200", "02"),
    ("São Paulo", "Brazil", -23.55, -46.63, "010", "11"),
)
STREETS: tuple[str, ...] = (
    "Main St", "Oak Ave", "Pine St", "Maple Dr", "Cedar Ln", "Elm St", "Lake Rd", "Hill St",
    "Park Ave", "River Rd", "1st Ave", "Market St",
)
FIRST: tuple[str, ...] = (
    "Alex", "Maria", "John", "Yvonne", "Susanna", "Rene", "Paul", "Sven", "Nancy", "Jim",
    "Thomas", "Anna", "Kenji", "Aiko", "Luis", "Carmen", "Olivia", "Noah", "Emma", "Liam",
    "Sofia", "Mateo", "Chloe", "Lucas", "Mia", "Ethan", "Zoe", "Omar", "Fatima", "Chen",
)
LAST: tuple[str, ...] = (
    "McKay", "Stubberod", "Valdes", "Andersen", "Smith", "Garcia", "Müller", "Dubois", "Rossi",
    "Tanaka", "Kim", "Nguyen", "Brown", "O'Brian", "Jones", "Martin", "Lopez", "Schmidt", "Novak",
    "Silva", "Cohen", "Patel", "Ivanova", "Larsen", "Moreau", "Costa", "Fischer", "Yamamoto",
    "Wilson", "Clark",
)
TITLES: tuple[str | None, ...] = (
    "Purchasing Manager", "CEO", "CFO", "IT Director", "Sales Director", "Buyer",
    "Operations Manager", "Office Manager", "CTO", "Procurement Lead", None,
)
OPP_TOPICS: tuple[str, ...] = (
    "New store opening", "Fleet renewal", "Annual licence renewal", "Cloud migration",
    "Support contract", "Training package", "Hardware refresh", "Expansion deal", "Pilot project",
    "Service upgrade",
)
# fmt: on
