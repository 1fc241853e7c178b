"""Write the demo knowledge base's .pdf and .docx files from the text below, deterministically.

    .venv/bin/python evaluation/demo_data/make_binaries.py [--out DIR]

The text of every binary document lives here, as a list of blocks, so the documents can be read,
reviewed and edited as text. PDFs are built with reportlab (invariant mode: no timestamps or random
ids), DOCX with python-docx (fixed core properties, fixed zip timestamps), so a rebuild with the
same library versions reproduces the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import io
import zipfile
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

KB_DIR = Path(__file__).resolve().parent / "kb"
FIXED_TIME = datetime(2024, 6, 1, 9, 0, 0)
AUTHOR = "Saltreach Ferry Cooperative"

# Blocks: ("h1", text) title, ("h2", text) heading, ("p", text), ("ul", [items]),
# ("table", [header, row, ...]), ("page",) page break (PDF only; DOCX ignores it).

PDFS: dict[str, list[tuple]] = {
    "fleet-guide-2024.pdf": [
        ("h1", "Saltreach fleet guide 2024"),
        ("p", "The Saltreach Ferry Cooperative operates six vessels on six routes around the Vellmar Isles. "
              "This guide gives the key facts about each ship for passengers, members and new crew. Every ship "
              "carries the cooperative's motto on her bow and the cooperative's blue and white funnel colours."),
        ("table", [["Vessel", "In service", "Passengers", "Cars", "Main route"],
                   ["MV Corrie Dawn", "2009", "312", "38", "R1"],
                   ["MV Kestrel Vane", "2019", "220", "24", "R2"],
                   ["MV Gulvane Spirit", "2004", "180", "22", "R4"],
                   ["MV Brannock Lass", "1998", "140", "12", "R5 and relief"],
                   ["MV Orrin Wren", "2011", "60", "none", "R3"],
                   ["Skimmer Two", "2016", "96", "none", "X7"]]),
        ("h2", "MV Corrie Dawn"),
        ("p", "The Corrie Dawn is the largest ship in the fleet and the workhorse of the Skelly Holm route. She "
              "was built in 2009 by Hesketh Yard in Dunmoor and is 68 metres long. She is licensed for 312 "
              "passengers and carries up to 38 cars on a drive-through deck, so vehicles never have to reverse "
              "off. Passenger facilities include the forward saloon with four wheelchair spaces, a galley, a "
              "children's corner and the Paw Lounge for dogs on deck 4."),
        ("h2", "MV Kestrel Vane"),
        ("p", "The Kestrel Vane was the first hybrid-electric ferry in the Vellmar Isles. She was built in 2019 "
              "by Ferrand Marine of Solvik and serves the Brannock Isle route. A battery of 1.9 MWh lets her "
              "manoeuvre in harbour with her diesel generators switched off, and the batteries are topped up "
              "from the generators at sea and from shore power overnight. She carries 220 passengers and 24 cars. "
              "Her deck 3 has the Quiet Cabin and a Paw Lounge beside the forward stairs."),
        ("page",),
        ("h2", "MV Gulvane Spirit"),
        ("p", "The Gulvane Spirit was designed for the long and exposed Gulvane route, where freight matters as "
              "much as passengers. Built in 2004, she carries 180 passengers and either 22 cars or up to 9 "
              "freight trailers. Six refrigerated plug-in points on her vehicle deck keep the Gulvane fishing "
              "fleet's catch chilled on its way to market. Volunteers from the Seabird Watch scheme count birds "
              "from her upper deck."),
        ("h2", "MV Brannock Lass"),
        ("p", "The Brannock Lass was the cooperative's first purpose-built ship, delivered in 1998. She now runs "
              "the Summer Link between Skelly Holm and Gulvane and stands in for other ships during their annual "
              "refits. She carries 140 passengers and 12 cars. A replacement is being sought."),
        ("h2", "MV Orrin Wren"),
        ("p", "The Orrin Wren is a 19-metre launch that links Brannock Isle with car-free Little Orrin all year. "
              "Built in 2011, she carries 60 passengers and no vehicles. A goods cage on her foredeck carries the "
              "island's post, shopping and luggage, lifted aboard by a small crane at Brannock pier."),
        ("h2", "Skimmer Two"),
        ("p", "Skimmer Two is an aluminium catamaran built in 2016 by Tarrant Boatworks. Her water jets give her "
              "a top speed of 28 knots, which lets the X7 express reach Brannock Isle in 50 minutes. She carries "
              "96 passengers in a single cabin with airline-style seats and a drinks kiosk. Because her hull is "
              "light, she has lower weather limits than the rest of the fleet and runs only from April to "
              "October."),
        ("h2", "Maintenance"),
        ("p", "Each ship spends two to four weeks a year in refit, always between November and March, when "
              "traffic is lightest. The work is planned by the engineering superintendent, who reports to the "
              "Marine Superintendent."),
    ],
    "annual-review-2023.pdf": [
        ("h1", "Annual review 2023"),
        ("p", "This review summarises the Saltreach Ferry Cooperative's year from 1 January to 31 December "
              "2023. The full audited accounts were presented to members at the annual general meeting in "
              "October 2024 and are available from the company secretary."),
        ("h2", "The year in numbers"),
        ("table", [["Measure", "2023", "2022"],
                   ["Passengers carried", "418,600", "401,900"],
                   ["Vehicles carried", "97,250", "94,100"],
                   ["Sailings completed", "98.1%", "97.6%"],
                   ["Sailings cancelled for weather", "187", "231"],
                   ["Punctuality (within 10 minutes)", "94.3%", "92.8%"],
                   ["Customer satisfaction (out of 10)", "8.4", "8.1"],
                   ["Members at year end", "9,340", "8,870"]]),
        ("p", "Our busiest day was 12 August 2023, the final Saturday of Regatta Week, when we carried 4,912 "
              "passengers on all routes."),
        ("h2", "Chair's statement"),
        ("p", "Tobias Quellan, chair of the board, writes: 2023 was the year our members' cooperative carried "
              "more people than ever before, while burning less fuel than in any year since 2015. I thank our "
              "crews and shore staff, who kept the islands connected through one of the stormiest autumns on "
              "record, and our members, whose loyalty is the reason Saltreach exists."),
        ("page",),
        ("h2", "Finances"),
        ("p", "Total revenue was €11.2 million, up 5% on 2022. Fares brought in 78% of revenue, freight 14% "
              "and catering 6%. Costs rose less quickly than revenue, mainly because fuel prices fell during "
              "the year. The cooperative made a surplus of €640,000, of which the board recommended, and the "
              "members approved, a Tide Rebate of 3% of the fares each member spent in the year. The rest of "
              "the surplus was added to the reserve for new ships."),
        ("h2", "Service"),
        ("p", "Punctuality improved on every route except R4, where the Gulvane Spirit lost eleven days to an "
              "unplanned repair to her steering gear in March. Complaints fell to 1,184 from 1,390 the year "
              "before. The most common complaints were about summer queues at Kelderby and the old booking "
              "website, which the Berthline system is replacing."),
        ("h2", "Environment"),
        ("p", "Our ships and buildings emitted 14,800 tonnes of carbon dioxide equivalent in 2023. The "
              "Kestrel Vane's batteries and shore power at Port Aldric are the main reasons for the fall."),
        ("h2", "People"),
        ("p", "At the end of the year we employed 286 people. Twelve new Fathom Programme apprentices started "
              "in September, and eleven apprentices from the 2022 intake completed the programme."),
        ("h2", "Looking ahead"),
        ("p", "In 2024 we will launch Berthline, start the search for a ship to replace the MV Brannock Lass, "
              "and continue the move to HVO renewable diesel across the fleet."),
    ],
    "freight-handbook.pdf": [
        ("h1", "Freight handbook"),
        ("p", "This handbook is for hauliers, island businesses and farmers who send goods on Saltreach ferries. "
              "Freight is carried on all vehicle routes, but most of it travels on R4 to Gulvane aboard the "
              "MV Gulvane Spirit, which was designed for trailers. Freight bookings are handled by the freight "
              "office on Cooper's Quay, run by the Freight Coordinator, Bartholomew Pennick."),
        ("h2", "Booking"),
        ("p", "Freight must be booked by 16:00 on the day before sailing. Bookings made later are carried only "
              "if there is space after booked traffic has boarded. Regular shippers can hold standing bookings "
              "for the same sailing every week. Call the freight office on 0190 447 2290 or book in Berthline "
              "with a freight account."),
        ("h2", "Size and weight limits"),
        ("ul", ["Maximum vehicle height: 4.6 metres.",
                "Maximum vehicle length: 16.5 metres on R4, 12 metres on R1 and R2.",
                "Maximum axle weight: 11.5 tonnes.",
                "Every freight vehicle over 7.5 tonnes is weighed on the Port Aldric weighbridge before boarding."]),
        ("page",),
        ("h2", "Prices"),
        ("p", "Vehicles over 9 metres long are charged by the lane metre, that is, by their length rounded up "
              "to the next metre. The rate is €21.40 per lane metre on R4 and €17.80 per lane metre on R1 and "
              "R2. The driver travels free. Unaccompanied trailers are charged at the same rate plus a handling "
              "fee of €35 for the tug that loads them."),
        ("h2", "Dangerous goods"),
        ("p", "Dangerous goods, including fuel, gas cylinders, fertiliser and explosives for quarrying, may only "
              "travel as declared freight. Complete dangerous goods declaration form DG-3 and send it to the "
              "freight office at least 48 hours before the sailing. The master may refuse any load that is not "
              "declared or not packed and labelled correctly. No passengers other than drivers may travel on a "
              "sailing carrying explosives."),
        ("h2", "Livestock"),
        ("p", "Livestock is carried on R4 only, on the Monday sailing, in approved trailers. Animals must be "
              "accompanied by their owner or a drover and must have water for the crossing."),
        ("h2", "Refrigerated goods"),
        ("p", "The Gulvane Spirit has six refrigerated plug-in points. Book them when you book your trailer; "
              "they are allocated in booking order."),
    ],
    "tidecard-product-sheet.pdf": [
        ("h1", "Tidecard: the Saltreach smartcard"),
        ("p", "Tidecard is a contactless smartcard that you load with money and tap to travel. It was launched "
              "on 3 May 2021 and replaced paper carnets for most foot passengers. Tidecard is the quickest way "
              "to board: tap your card on the green Tidegate reader at the gangway and walk on."),
        ("h2", "Why use Tidecard"),
        ("ul", ["Every foot fare paid with Tidecard is 10% cheaper than paying at the ticket window.",
                "No queue: you can board without a ticket as long as you have enough balance.",
                "Islander and Silver discounts can be added to your card.",
                "The Tide Rebate for members is credited straight to the card in December."]),
        ("h2", "Getting a card"),
        ("p", "A Tidecard costs €4 from any ticket window, the Harbour Desk or Berthline. Islander Cards can "
              "hold a Tidecard balance, so islanders do not need a separate card."),
        ("table", [["Product code", "Card type", "Who it is for"],
                   ["TC-ADULT", "Adult Tidecard", "Anyone aged 16 or over"],
                   ["TC-CHILD", "Child Tidecard", "Children aged 5 to 15"],
                   ["TC-ISL", "Islander Tidecard", "Islander Card holders"]]),
        ("page",),
        ("h2", "Topping up"),
        ("p", "You can top up online, at the ticket windows, at the Harbour Desk, and at the village shops on "
              "Gulvane and Little Orrin. The smallest top-up is €10. A card can hold a balance of up to €250. "
              "With auto top-up, we add the amount you choose from your bank card whenever your balance drops "
              "below €15."),
        ("h2", "Lost, stolen or broken cards"),
        ("p", "Register your card in Berthline so that we can protect your balance. If a registered card is "
              "lost, stolen or broken, report it to the Harbour Desk: we block the card at once and move the "
              "balance to a replacement card, which costs €6. Unregistered cards cannot be replaced."),
        ("h2", "Rules"),
        ("ul", ["Your balance never expires.",
                "One card pays for one person; tap once for each passenger if you travel together.",
                "Vehicle fares cannot be paid by tapping and must be booked in advance.",
                "Unused balance is refunded when you return the card."]),
    ],
    "safety-at-sea.pdf": [
        ("h1", "Safety at sea: information for passengers"),
        ("p", "Ferry travel is one of the safest ways to travel, and our crews train every week to keep it "
              "that way. Please take two minutes to read this leaflet and to listen to the safety announcement "
              "made after departure."),
        ("h2", "The general emergency alarm"),
        ("p", "If there is an emergency, you will hear the general emergency alarm: seven short blasts followed "
              "by one long blast, on the ship's whistle and alarm bells. When you hear it, stay calm, follow "
              "the crew's instructions and go to your muster station."),
        ("h2", "Muster stations"),
        ("p", "Muster stations are the places where passengers gather in an emergency. They are marked by green "
              "signs showing the letter M. On the Corrie Dawn there are three muster stations, one in each "
              "saloon. Crew members at each station will count passengers and give out lifejackets."),
        ("page",),
        ("h2", "Lifejackets"),
        ("p", "Adult lifejackets are stored in orange lockers beside each muster station and under the seats "
              "in the forward saloons. Lifejackets for children and infants are kept at the information point; "
              "if you travel with a baby, the crew will bring one to you. Put on a lifejacket only when the "
              "crew tell you to."),
        ("h2", "Leaving the ship"),
        ("p", "The Corrie Dawn and the Kestrel Vane have a marine evacuation system: inflatable chutes that "
              "lead from the passenger deck into large covered life-rafts. Other ships carry throw-over "
              "life-rafts launched by the crew. You will never be asked to jump into the sea."),
        ("h2", "Your part"),
        ("ul", ["Leave the car deck before the ship sails; do not return until you are told to.",
                "Keep children with you and do not let them climb on rails.",
                "Read the safety notices in your saloon and find your nearest muster station.",
                "Tell a crew member at once if you see someone fall overboard, and keep pointing at them."]),
        ("h2", "First aid"),
        ("p", "Every ship carries a defibrillator and first-aid equipment, and at least two crew members on each "
              "sailing hold advanced first-aid certificates. Our safety management system, known as SMS-4, is "
              "audited every year by the Vellmar Maritime Authority."),
    ],
}

DOCXS: dict[str, list[tuple]] = {
    "crew-handbook.docx": [
        ("h1", "Crew handbook"),
        ("p", "This handbook is for everyone who works on board a Saltreach ship. It sets out the rules that "
              "keep crews safe and the standards our passengers expect. Read it before your first sailing and "
              "keep it with you. Questions go to your master or to the crewing office."),
        ("h2", "Rotations and hours"),
        ("p", "Seagoing crews work two weeks on and two weeks off. On duty, the normal shift is twelve hours. "
              "Every crew member must have at least 10 hours of rest in any 24-hour period and at least 77 "
              "hours of rest in any seven days. The master keeps a record of hours of rest, and you must report "
              "any breach to the crewing office."),
        ("h2", "Ranks and uniform"),
        ("p", "Uniform is issued on joining and replaced each year. Officers wear gold stripes on the "
              "epaulettes, as shown below."),
        ("table", [["Rank", "Stripes", "Reports to"],
                   ["Master", "Four", "Marine Superintendent"],
                   ["Chief Officer", "Three", "Master"],
                   ["Chief Engineer", "Four, with purple", "Master"],
                   ["Second Officer", "Two", "Chief Officer"],
                   ["Bosun", "None", "Chief Officer"],
                   ["Deckhand", "None", "Bosun"]]),
        ("h2", "Alcohol and drugs"),
        ("p", "No alcohol may be drunk on board while on duty or in the eight hours before a shift. Crew are "
              "tested at random, and a reading above zero means removal from duty. Crew living in Port Aldric "
              "accommodation may drink moderately off duty ashore."),
        ("h2", "Drills"),
        ("p", "Each ship holds a fire or abandon-ship drill every week. New crew take part in a drill before "
              "their first sailing with passengers. Drills are recorded in the ship's log and audited by the "
              "Safety and Compliance Manager."),
        ("h2", "Near misses"),
        ("p", "A near miss is an event that could have caused harm but did not. Report every near miss on "
              "form NM-1 before the end of your shift. Reports are read by the Safety and Compliance Manager, "
              "and nobody is disciplined for honestly reporting a near miss."),
        ("h2", "The Crew Code"),
        ("p", "Greet passengers at the gangway, wear your name badge, never argue with a passenger in public, "
              "and call a senior officer if a situation gets difficult. Islanders are our owners as well as our "
              "passengers: treat every passenger as a member."),
    ],
    "group-travel.docx": [
        ("h1", "Group travel and school trips"),
        ("p", "Saltreach welcomes groups of every kind: walking clubs, choirs, sports teams, tour operators and "
              "schools. This guide explains our group discounts and how to book."),
        ("h2", "Group discounts"),
        ("p", "Groups of 10 or more foot passengers travelling together get 15% off the adult and child fares. "
              "School groups get a larger discount of 25%, and one teacher travels free for every 8 pupils. "
              "Group discounts cannot be combined with Islander, Silver or Tidecard discounts."),
        ("table", [["Group type", "Minimum size", "Discount", "Free places"],
                   ["General group", "10", "15%", "None"],
                   ["School group", "10 pupils", "25%", "One teacher per 8 pupils"],
                   ["Youth club or scouts", "10", "25%", "One leader per 10 members"],
                   ["Tour operator", "20", "Net rates on request", "Driver and guide"]]),
        ("h2", "Booking a group"),
        ("p", "Group bookings must be made at least 14 days before travel through the Groups Team at the Harbour "
              "Desk. We ask for a deposit of 20% of the total fare when you book, and the balance 7 days before "
              "travel. You can reduce the size of the group by up to 10% without charge until 48 hours before "
              "departure."),
        ("h2", "Coaches"),
        ("p", "Coaches must be booked with the group and are charged at the freight lane-metre rate. Coaches "
              "over 12 metres can only travel on R4. Coach drivers travel free."),
        ("h2", "On the day"),
        ("p", "The group leader should collect the group ticket from the ticket window at least 30 minutes before "
              "departure and keep the group together at the gangway. On the larger ships, we can reserve an area "
              "of the saloon for groups of 30 or more if you ask when booking."),
        ("h2", "School visits"),
        ("p", "Schools can ask for a free bridge talk on the Corrie Dawn, in which an officer explains how the "
              "ship is navigated. Bridge talks are available on weekday sailings outside the summer timetable."),
    ],
    "members-forum-notes-2023-11.docx": [
        ("h1", "Members' forum, autumn 2023: notes"),
        ("p", "The autumn members' forum was held on 18 November 2023 at the Gulvane Fish Hall, where the "
              "cooperative was founded. It was attended by 87 members and chaired by the Islands Liaison "
              "Officer, Ewan Brisco. Ilse Varnhorst and Owen Traske answered questions for the executive team."),
        ("h2", "Winter timetable"),
        ("p", "Members from Gulvane said the winter R4 timetable of three sailings a week left the island cut off "
              "for too long when sailings were cancelled. The executive explained that the Gulvane Spirit's "
              "crew hours do not allow a daily winter service without a second crew. Members asked for the cost "
              "of a second crew to be brought to the next forum."),
        ("h2", "A later sailing from the mainland"),
        ("p", "Several members asked for a later sailing home from Port Aldric on weekend evenings, so that "
              "islanders could visit the mainland for an evening without staying overnight. The executive "
              "agreed to study demand and cost and to report back in 2024."),
        ("h2", "Tide Rebate"),
        ("p", "Owen Traske confirmed that the board would recommend a Tide Rebate of 3% of fares for 2023, to "
              "be credited to members' Tidecards in December. Members welcomed the news."),
        ("h2", "Berthline"),
        ("p", "Felix Marrow's team gave a short demonstration of the new Berthline booking system. Members asked "
              "for large print and for the booking reference to be shown clearly on the first screen."),
        ("h2", "Actions"),
        ("table", [["Action", "Owner", "Due"],
                   ["Cost a second crew for daily winter R4 sailings", "Captain Rhona Delacey", "Spring 2024 forum"],
                   ["Study demand for a late weekend sailing from Port Aldric", "Ilse Varnhorst", "Autumn 2024"],
                   ["Add a large-print option to Berthline", "Felix Marrow", "Before go-live"],
                   ["Publish these notes in Members' News", "Ewan Brisco", "December 2023"]]),
    ],
    "port-aldric-terminal-guide.docx": [
        ("h1", "Port Aldric terminal guide"),
        ("p", "Port Aldric terminal on Cooper's Quay is the mainland gateway to the Vellmar Isles and the "
              "cooperative's head office. It is a ten-minute walk from the railway station and the bus station. "
              "The terminal is managed by Colm Arden."),
        ("h2", "Opening hours"),
        ("p", "The terminal building and the waiting lounge open at 06:00 every day and close 15 minutes after "
              "the last arrival. The ticket windows open 45 minutes before the first sailing."),
        ("h2", "Parking"),
        ("p", "The short-stay car park in front of the terminal is free for up to two hours, for dropping off "
              "and collecting passengers. For longer stays, use the long-stay car park, Quayside East, which "
              "costs €9.40 per day. Islanders with an Islander Card pay half price. There are eight electric "
              "vehicle chargers in Quayside East, paid by card."),
        ("h2", "Facilities"),
        ("table", [["Facility", "Where", "Notes"],
                   ["Waiting lounge", "First floor", "Seats 240, with views over the harbour"],
                   ["Left luggage", "Beside the ticket windows", "€4.00 per item per day"],
                   ["Lost property office", "Ground floor, east side", "Collect with photo identification"],
                   ["Cafe", "First floor", "Run by the Galley team"],
                   ["Changing places toilet", "Ground floor", "With hoist and adult changing bench"]]),
        ("h2", "Drivers"),
        ("p", "Follow the blue signs to the marshalling lanes. Show your booking reference at the check-in "
              "booth and wait in the lane you are given. Drivers must check in at least 30 minutes before "
              "departure. Freight vehicles use the separate freight gate and the weighbridge."),
        ("h2", "Foot passengers"),
        ("p", "Foot passengers board through the covered walkway from the first floor. Boarding starts about "
              "20 minutes before departure and the gangway closes 5 minutes before departure."),
    ],
    "charter-services.docx": [
        ("h1", "Charter services"),
        ("p", "When they are not needed for scheduled services, Saltreach ships can be chartered for private "
              "trips, events and celebrations. Every charter is crewed by our own officers and crew, and the "
              "money earned helps keep fares down for islanders."),
        ("h2", "What you can charter"),
        ("table", [["Vessel", "Half day", "Full day", "Passengers"],
                   ["Skimmer Two", "€1,450", "€2,600", "96"],
                   ["MV Brannock Lass", "€1,900", "€3,400", "140"],
                   ["MV Orrin Wren", "€520", "€900", "60"]]),
        ("p", "A half day is up to four hours and a full day up to nine hours, including boarding. Prices "
              "include crew and fuel. Catering can be arranged by our galley team at extra cost."),
        ("h2", "Popular charters"),
        ("ul", ["Wedding parties to St Ebba's Chapel on Little Orrin.",
                "Wildlife trips to the Skerry Stacks and Graywick Cliffs.",
                "Scattering of ashes at sea, with a short ceremony led by the master if the family wishes.",
                "Corporate days out and island business visits."]),
        ("h2", "Booking"),
        ("p", "Book at least 8 weeks ahead by emailing charter@saltreach.coop. A deposit of 30% secures the "
              "date, and the balance is due 14 days before the charter. Charters in July and August are only "
              "possible on the Orrin Wren on Sundays, because the other ships are busy with scheduled services."),
        ("h2", "Weather"),
        ("p", "If the master decides that the weather makes the charter unsafe, we offer another date or a full "
              "refund. Skimmer Two charters follow her lower weather limits."),
    ],
}


def write_pdf(blocks: list[tuple], path: Path) -> None:
    """Render ``blocks`` as an A4 PDF at ``path``, with no timestamps or random ids in the file."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import ListFlowable, ListItem, PageBreak, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    title = blocks[0][1]
    story = []
    for kind, *rest in blocks:
        if kind == "h1":
            story.append(Paragraph(escape(rest[0]), styles["Title"]))
        elif kind == "h2":
            story.append(Paragraph(escape(rest[0]), styles["Heading2"]))
        elif kind == "p":
            story.append(Paragraph(escape(rest[0]), styles["BodyText"]))
        elif kind == "ul":
            story.append(ListFlowable([ListItem(Paragraph(escape(t), styles["BodyText"])) for t in rest[0]],
                                      bulletType="bullet"))
        elif kind == "table":
            table = Table([[Paragraph(escape(c), styles["BodyText"]) for c in row] for row in rest[0]])
            table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                                       ("BACKGROUND", (0, 0), (-1, 0), colors.lightblue)]))
            story.extend([table, Spacer(1, 4 * mm)])
        elif kind == "page":
            story.append(PageBreak())

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.drawString(20 * mm, 10 * mm, f"{AUTHOR} - {title} - page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(str(path), pagesize=A4, title=title, author=AUTHOR, creator=AUTHOR,
                            producer=AUTHOR, subject=title, invariant=1, pageCompression=1)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)


def write_docx(blocks: list[tuple], path: Path) -> None:
    """Render ``blocks`` as a DOCX at ``path`` with fixed core properties and zip timestamps."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.author = props.last_modified_by = AUTHOR
    props.title = blocks[0][1]
    props.created = props.modified = FIXED_TIME
    props.revision = 1
    for kind, *rest in blocks:
        if kind == "h1":
            document.add_heading(rest[0], level=0)
        elif kind == "h2":
            document.add_heading(rest[0], level=1)
        elif kind == "p":
            document.add_paragraph(rest[0])
        elif kind == "ul":
            for item in rest[0]:
                document.add_paragraph(item, style="List Bullet")
        elif kind == "table":
            rows = rest[0]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            table.style = "Table Grid"
            for r, row in enumerate(rows):
                for c, text in enumerate(row):
                    table.cell(r, c).text = text
            for cell in table.rows[0].cells:
                for run in cell.paragraphs[0].runs:
                    run.bold = True
    buffer = io.BytesIO()
    document.save(buffer)
    # python-docx stamps each zip member with the current time: rewrite them with a fixed one.
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_TIME.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))


def build_binaries(out_dir: Path = KB_DIR) -> list[Path]:
    """Write every PDF and DOCX document into ``out_dir`` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, blocks in PDFS.items():
        write_pdf(blocks, out_dir / name)
        written.append(out_dir / name)
    for name, blocks in DOCXS.items():
        write_docx(blocks, out_dir / name)
        written.append(out_dir / name)
    return written


def main() -> None:
    """Command line: rebuild the binaries into kb/ (or --out DIR)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=KB_DIR, help="folder to write into (default: kb/ beside this script)")
    args = parser.parse_args()
    for path in build_binaries(args.out):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
