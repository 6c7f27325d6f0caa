"""Write the bundled sample datasets in `samples/datasets/`, in the exact upstream formats.

    python samples/build_samples.py              # rewrite samples/datasets/
    python samples/build_samples.py --out DIR    # write the same files somewhere else

Every text below was written for camel_chat; none of it is copied from the real datasets.
The files mirror what `download_datasets` fetches (spec §1–§3, §8.1): the CAMEL archives,
the raw ShareGPT crawl with HTML values, the Alpaca parquet and the KAgentInstruct JSON.
Output is byte-identical from run to run (fixed timestamps, sorted members), so the
committed files can be reviewed as the product of this script and checked by a test.
"""

from __future__ import annotations

import argparse
import gzip
import html
import io
import json
import re
import tarfile
import textwrap
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_OUT = Path(__file__).resolve().parent / "datasets"

# 2023-06-20 00:00:00 UTC, about when the seed downloaded its data.
FIXED_MTIME = 1687219200
ZIP_DATE = (2023, 6, 20, 0, 0, 0)


# ---------------------------------------------------------------------------------------
# Text helpers: literals wrap freely in the source, the data gets single-line paragraphs.


def prose(*paragraphs: str) -> str:
    """Join paragraphs with blank lines, collapsing the source's line wrapping inside each."""
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def fenced(lang: str, source: str) -> str:
    return f"```{lang}\n{textwrap.dedent(source).strip()}\n```"


def lines(*items: str) -> str:
    return "\n".join(" ".join(item.split()) for item in items)


# ---------------------------------------------------------------------------------------
# CAMEL chat format (ai_society_chat, code_chat): one JSON object per conversation.


def instruction(text: str, given: str | None = None) -> str:
    """An AI-user turn as CAMEL's inception prompt makes it: `Instruction: …\\nInput: …`."""
    return f"Instruction: {' '.join(text.split())}\nInput: {given if given else 'None'}"


def solution(text: str, end: str = "\n\nNext request.", head: str = "Solution: ") -> str:
    """An AI-assistant turn: `Solution: …` followed by `Next request.`."""
    return f"{head}{text}{end}"


TASK_DONE = "<CAMEL_TASK_DONE>"


def chat(
    conv_id: str,
    *,
    assistant: str,
    user: str,
    original_task: str,
    specified_task: str,
    messages: Sequence[str],
    termination: str | None,
    id_key: str = "id",
) -> dict[str, Any]:
    """One conversation file; `messages` alternate user, assistant, … as generated."""
    record: dict[str, Any] = {
        id_key: conv_id,
        "role_1": f"{assistant}_RoleType.ASSISTANT",
        "role_2": f"{user}_RoleType.USER",
        "original_task": original_task,
        "specified_task": " ".join(specified_task.split()),
    }
    for k, content in enumerate(messages, start=1):
        by_user = k % 2 == 1
        record[f"message_{k}"] = {
            "role_name": user if by_user else assistant,
            "role_type": "USER" if by_user else "ASSISTANT",
            "meta_dict": None,
            "role": "user" if by_user else "assistant",
            "content": content,
        }
    if termination is not None:
        record["termination_reason"] = termination
    record["num_messages"] = len(messages)
    return record


FILM_BUDGET = chat(
    "001_004_002",
    assistant="Accountant",
    user="Actor",
    original_task="Develop a budget for an independent film production.",
    specified_task="""Accountant will help Actor build a detailed budget for an 18-day
        independent feature shoot, covering cast and crew, equipment, locations, insurance,
        post-production and a 10% contingency, so Actor can present it to investors.""",
    messages=[
        instruction("List the main budget categories for an independent feature film."),
        solution(
            "The main budget categories for an independent feature film are:\n\n"
            "1. Above-the-line: story rights, screenplay, producer, director and principal "
            "cast.\n"
            "2. Production (below-the-line): crew wages, equipment rental, locations and "
            "permits, art department, wardrobe, transport and catering.\n"
            "3. Post-production: editing, sound design and mix, music licensing, colour "
            "grading and visual effects.\n"
            "4. Other: insurance, legal and accounting fees, festival submissions and "
            "marketing materials.\n"
            "5. Contingency: usually 10% of everything above."
        ),
        instruction(
            "Estimate the cost of cast and crew for the 18-day shoot.",
            "There are 4 principal actors at $1,200 per day and a crew of 15 at an average of $350 per day.",
        ),
        solution(
            prose(
                """Cast: 4 actors x $1,200 x 18 days = $86,400. Crew: 15 people x $350 x 18
                days = $94,500. Cast and crew together cost $180,900. Payroll taxes and
                fringe benefits typically add about 20%, which is $36,180, so the labour
                line of the budget should be $217,080."""
            ),
            end=" Next request.",
        ),
        instruction(
            """Add equipment, locations, insurance and post-production, then compute the
            10% contingency and the grand total.""",
            "Equipment rental is $2,500 per day, location permits total $12,000, insurance "
            "is $9,500 and post-production is quoted at $48,000.",
        ),
        solution(
            "\n\n| Category | Cost |\n|---|---|\n"
            "| Cast and crew (with fringes) | $217,080 |\n"
            "| Equipment rental (18 days x $2,500) | $45,000 |\n"
            "| Location permits | $12,000 |\n"
            "| Insurance | $9,500 |\n"
            "| Post-production | $48,000 |\n"
            "| Subtotal | $331,580 |\n"
            "| Contingency (10%) | $33,158 |\n"
            "| Total | $364,738 |\n\n"
            "Keep the contingency as its own line: investors can then see that the other "
            "categories are not padded."
        ),
        TASK_DONE,
    ],
    termination=TASK_DONE,
)

# Long enough that it must be split at 512 tokens: six long answers.
CLASSROOM = chat(
    "006_019_005",
    assistant="Architect",
    user="Teacher",
    original_task="Design an energy-efficient classroom.",
    specified_task="""Architect will help Teacher redesign a 60-square-metre primary school
        classroom in a temperate climate to cut heating and lighting energy by at least 40%
        while improving daylight, air quality and acoustics, within a $45,000 renovation
        budget.""",
    messages=[
        instruction("Explain how to measure the classroom's current energy use before we change anything."),
        solution(
            prose(
                """Before any design work we need a baseline, otherwise we cannot prove the 40%
                saving. I suggest a simple energy audit in four parts.""",
                """First, collect twelve months of utility bills for the school and ask the
                facilities manager whether the classroom has its own sub-meter. If it does
                not, a clamp-on electricity logger on the classroom circuit for two typical
                weeks, one in winter and one in spring, gives a good estimate of lighting
                and plug loads. Heating is usually shared, so we estimate the classroom's
                share from its floor area and its number of exposed walls.""",
                """Second, survey the envelope. Note the wall construction, the window type
                and frame material, and whether there is roof insulation above the ceiling.
                A thermal camera on a cold morning shows where heat escapes: typical weak
                points are window reveals, the junction between wall and roof, and old
                radiator recesses.""",
                """Third, record the lighting: the number of fittings, lamp type, wattage,
                and how the lights are switched. Fluorescent tubes left on all day are
                common and easy to improve.""",
                """Fourth, measure comfort, because a classroom that saves energy but feels
                stuffy is a failure. Place a carbon dioxide and temperature logger at desk
                height for a week. Readings above 1,500 ppm during lessons tell us that
                ventilation must be part of the design.""",
                """With these four sets of numbers we can rank the measures by cost per
                kilowatt-hour saved.""",
            )
        ),
        instruction(
            "Propose improvements to the walls, roof and windows.",
            "The audit found uninsulated cavity brick walls, 50 mm of roof insulation and "
            "single-glazed aluminium windows covering 30% of the outside wall.",
        ),
        solution(
            prose(
                """Those findings point to the envelope as the largest source of heat loss,
                so it deserves most of the budget.""",
                """Walls: the cavity brick walls can be filled with blown mineral wool or
                polystyrene beads. The work takes one day, is done from outside, and
                usually reduces the wall U-value from about 1.5 to about 0.5 W/m²K. It is
                the cheapest measure per unit of heat saved.""",
                """Roof: top up the loft insulation from 50 mm to at least 250 mm of mineral
                wool. Keep the insulation away from the eaves so the roof space stays
                ventilated, and insulate and draught-strip the loft hatch, which is often
                forgotten.""",
                """Windows: replace the single-glazed aluminium units with double-glazed,
                thermally broken frames with a low-emissivity coating, aiming for a
                whole-window U-value of 1.4 or better. Because the windows cover 30% of
                the wall, this change alone removes a large part of the heat loss and also
                ends the cold down-draughts that make pupils near the windows
                uncomfortable.""",
                """Airtightness: seal gaps around the new frames, pipes and cable
                penetrations. Uncontrolled draughts waste heat, but we must replace them
                with controlled ventilation, which we will plan separately.""",
                """Together these measures should cut the heating demand of the room by
                roughly half.""",
            )
        ),
        instruction("Describe how to improve daylight in the room without causing glare or overheating."),
        solution(
            prose(
                """Good daylight reduces lighting energy and is known to help concentration,
                but sunlight falling directly on desks and screens causes glare.""",
                """Keep the window area roughly as it is, since the new glazing performs far
                better, but raise the window heads if the lintels allow it: daylight from
                the top of a window reaches much deeper into the room than light from the
                bottom.""",
                """Add a light shelf on the south-facing windows at about 2.1 m height. Its
                top surface reflects daylight onto the ceiling and deeper into the room,
                while its underside shades the lower glass from high summer sun.""",
                """Paint the ceiling and the upper walls with a matt white finish with a
                reflectance above 80%, and use light colours for the floor and furniture.
                Dark surfaces absorb the daylight we worked to bring in.""",
                """Fit external or mid-pane blinds on the east and west windows, where low
                morning and afternoon sun is hardest to control. Internal blinds stop glare
                but trap heat inside the room, so external shading is preferable.""",
                """Place the interactive whiteboard on a wall perpendicular to the windows,
                so neither the teacher nor the pupils face the glare.""",
                """With these changes most of the room should reach a daylight factor of 2%
                or more, enough to leave the lights off on most spring and summer
                mornings.""",
            )
        ),
        instruction("Recommend an efficient lighting and control system for the classroom."),
        solution(
            prose(
                """Replace the fluorescent fittings with LED panels of about 3,500 to 4,000
                kelvin, which gives a neutral white light suitable for reading. Aim for 300
                to 500 lux on the desks and a higher level on the board wall. LED panels
                use roughly half the power of the old tubes for the same light.""",
                """Group the fittings in rows parallel to the windows and connect each row
                to a daylight sensor. As daylight increases, the row nearest the windows
                dims first, then the middle row, while the row by the inner wall stays on
                longest.""",
                """Use absence detection rather than presence detection: the teacher
                switches the lights on, but they switch off automatically fifteen minutes
                after the room empties. Presence detection tends to switch lights on when
                they are not needed.""",
                """Provide a simple scene switch by the door with three settings: full
                lighting, presentation mode with the board row dimmed, and off. Teachers
                use controls that are simple and ignore controls that are complicated.""",
                """Finally, put the whiteboard and the computer chargers on a timer socket
                that cuts standby power at night and during holidays.""",
                """Together these steps should cut the lighting energy by 60 to 70% compared
                with the audit baseline.""",
            )
        ),
        instruction(
            "Design a ventilation strategy that keeps CO2 below 1,000 ppm.",
            "There are 28 pupils and one teacher, and the windows will open.",
        ),
        solution(
            prose(
                """With 29 occupants in 60 square metres the room needs about 8 litres per
                second per person, roughly 230 litres per second in total, to keep carbon
                dioxide under 1,000 ppm. Opening windows alone cannot deliver this reliably
                in winter, because nobody opens a window when it is cold outside.""",
                """I recommend a mixed-mode system. Install a decentralised mechanical
                ventilation unit with heat recovery, sized for the full design airflow. It
                recovers 75 to 85% of the heat from the stale air before exhausting it, so
                fresh air does not undo the insulation work.""",
                """Control the unit with the CO2 sensor: it runs at a low speed when the
                room is empty and rises as the concentration increases. Display the
                reading on a simple traffic-light indicator so pupils learn why fresh air
                matters.""",
                """In spring and summer the unit can switch to bypass mode, and opening
                windows on opposite sides of the room gives cross ventilation for free.
                Night-time purging through secure high-level vents cools the room before
                hot days.""",
                """Choose a unit rated below 30 dB(A) at normal speed, so the ventilation
                does not compete with the teacher's voice.""",
            )
        ),
        instruction(
            "Summarise the acoustic measures and check the total cost against the budget.",
            "Quotes: wall insulation $4,800, roof $2,200, windows $19,500, light shelf and "
            "shading $5,100, LED lighting and controls $6,300, ventilation unit $6,900.",
        ),
        solution(
            prose(
                """Acoustics: the new windows already reduce traffic noise. Inside the room,
                fit a Class A sound-absorbing ceiling over at least 80% of the ceiling area,
                keeping the light shelf zone reflective, and add one absorbent panel on the
                back wall so the teacher's voice is not echoed back. The target is a
                reverberation time below 0.6 seconds.""",
                """Costs: wall insulation $4,800, roof $2,200, windows $19,500, light shelf
                and shading $5,100, lighting and controls $6,300 and ventilation $6,900
                come to $44,800. That leaves only $200 of the $45,000 budget, and the
                acoustic ceiling is not yet included.""",
                """I suggest two options. Either ask the school to fund the acoustic ceiling,
                about $3,500, from its maintenance budget, since the ceiling tiles need
                replacing anyway, or reduce the window specification to standard
                double-glazed frames, which saves about $3,000 while keeping most of the
                thermal benefit.""",
                """Either way, the envelope, lighting and ventilation measures together are
                expected to reduce heating and lighting energy by 45 to 55%, above the 40%
                target.""",
            )
        ),
    ],
    termination="max_num_messages",
)

ANKLE_RECOVERY = chat(
    "012_031_008",
    id_key="input",  # the card calls the id field `input`; some files may follow the card
    assistant="Doctor",
    user="Athlete",
    original_task="Create a recovery plan after a sports injury.",
    specified_task="""Doctor will guide Athlete, a 24-year-old amateur soccer player with a
        grade 2 ankle sprain, through a six-week return-to-play plan with phases, exercises
        and clear criteria for moving to the next phase.""",
    messages=[
        instruction(
            "Outline the phases of the six-week recovery plan.",
            "The injury happened three days ago; the ankle is swollen but I can walk with a slight limp.",
        ),
        solution(
            "Phase 1 (days 1-7): protect the ligament. Use a brace, elevate the ankle, "
            "apply ice for 15 minutes every few hours and walk as pain allows.\n"
            "Phase 2 (weeks 2-3): restore movement and strength with ankle circles, calf "
            "raises and resistance-band exercises in all four directions.\n"
            "Phase 3 (weeks 4-5): balance and agility: single-leg stands, hopping and "
            "ladder drills.\n"
            "Phase 4 (week 6): sport-specific training: running with changes of direction, "
            "passing and shooting drills, then a full training session.",
            head="Solution:\n",
            end="\nNext request.",
        ),
        instruction("What criteria must I meet before returning to matches?"),
        solution(
            prose(
                """You can return to matches when you have no swelling after training, full
                range of motion compared with the other ankle, can hop on the injured leg 20
                times without pain, and can complete a full training session including
                sprints and tackles. Keep wearing a brace or tape for at least three months,
                because the risk of a repeat sprain is highest in that period."""
            )
        ),
        TASK_DONE,
    ],
    termination=TASK_DONE,
)

# The assistant starts giving instructions itself: CAMEL stops on the role flip.
AUTUMN_MENU = chat(
    "018_027_003",
    assistant="Chef",
    user="Event Planner",
    original_task="Plan a menu for a corporate event.",
    specified_task="""Chef will design a three-course autumn menu for a 120-guest corporate
        dinner organised by Event Planner, with vegetarian and gluten-free options and a food
        cost under $45 per guest.""",
    messages=[
        instruction("Suggest a seasonal starter that is also gluten-free."),
        solution(
            prose(
                """Roasted butternut squash soup with toasted pumpkin seeds, sage oil and a
                spoon of crème fraîche. It is naturally gluten-free, can be made vegetarian
                with vegetable stock, and can be prepared a day ahead, which matters for 120
                guests. Food cost is about $3.20 per portion."""
            )
        ),
        instruction(
            "Propose a main course with a meat option and a vegetarian option.",
            "About 20 guests are vegetarian.",
        ),
        solution(
            prose(
                """Meat: slow-braised beef short rib with red wine jus, celeriac purée and
                glazed carrots, about $14.50 per portion. Vegetarian: wild mushroom and
                chestnut wellington with the same vegetables, about $9.80 per portion.
                Serve the wellington with a gluten-free pastry for any guest who needs
                both."""
            )
        ),
        instruction("Recommend a dessert that can be plated quickly for 120 guests."),
        "Instruction: Please send me the final guest count and the list of allergies "
        "so I can confirm quantities with suppliers.\nInput: None",
    ],
    termination="assistant_instruct_threshold",
)

# No termination_reason at all: the converter must cope (the seed crashed on it).
FARM_FEATURE = chat(
    "022_011_006",
    assistant="Journalist",
    user="Farmer",
    original_task="Write a feature article about sustainable farming.",
    specified_task="""Journalist will interview Farmer about switching a 200-hectare mixed
        farm to regenerative practices and write an 800-word feature for a regional
        newspaper.""",
    messages=[
        instruction("Draft five interview questions about the farm's transition."),
        solution(
            "1. What made you decide to change the way you farm?\n"
            "2. Which practice did you start with, and why that one?\n"
            "3. How did your yields and costs change in the first three years?\n"
            "4. What have you noticed in the soil, the hedges and the wildlife?\n"
            "5. What would you tell a neighbour who is thinking about doing the same?"
        ),
        instruction(
            "Write the opening paragraph of the article.",
            "The farmer started with cover crops in 2019 and stopped ploughing in 2020.",
        ),
        solution(
            prose(
                """When the autumn rain comes to the valley, most fields turn brown and bare.
                On one 200-hectare farm they stay green. Since 2019 the fields have been
                planted with cover crops after every harvest, and since 2020 the plough has
                stayed in the shed. The result, the farmer says, is soil that holds water
                like a sponge, and a business that spends less on diesel and fertiliser
                every year."""
            )
        ),
    ],
    termination=None,
)

LICENSING = chat(
    "030_045_001",
    assistant="Lawyer",
    user="Musician",
    original_task="Review a music licensing agreement.",
    specified_task="""Lawyer will review the key clauses of a synchronisation licence offered
        to Musician for the use of one song in a television advertisement and point out the
        terms to negotiate.""",
    messages=[
        instruction(
            "Explain what this clause means for me.",
            '"The Licensee may use the Composition in perpetuity, throughout the universe, '
            'in all media now known or hereafter devised."',
        ),
        solution(
            prose(
                """The clause grants the advertiser the right to use your song forever, in
                every country, and in any format, including technologies that do not exist
                yet. For a single television advertisement this is far broader than needed.
                A typical synchronisation licence for an advertisement is limited to a term
                of one to three years, named territories, and named media such as
                television and online video."""
            )
        ),
        instruction("Which terms should I ask to change, in order of importance?"),
        solution(
            "1. Term: limit it to two years, with an option to renew for a further fee.\n"
            "2. Media and territory: television and online video in your home country.\n"
            "3. Fee: a separate fee for each additional year or territory.\n"
            "4. Exclusivity: if they ask for it, it should cost more, because you cannot "
            "license the song to other advertisers during the term."
        ),
        TASK_DONE,
    ],
    termination=TASK_DONE,
)

AI_SOCIETY = [FILM_BUDGET, CLASSROOM, ANKLE_RECOVERY, AUTUMN_MENU, FARM_FEATURE, LICENSING]


EXPENSE_SCRIPT = chat(
    "001_003_012",
    assistant="Python",
    user="Accounting",
    original_task="Build a tool to summarise monthly expenses.",
    specified_task="""Python Programmer will write a script for an accountant that reads a CSV
        export of company card transactions, totals the amounts by month and category, flags
        any single transaction above $5,000 and writes the summary to a new CSV file.""",
    messages=[
        instruction(
            "Write a function that reads the transactions from the CSV file.",
            "The file has the columns date (YYYY-MM-DD), description, category and amount.",
        ),
        solution(
            "We can use the `csv` module and convert each row as we read it:\n\n"
            + fenced(
                "python",
                """
                import csv
                from datetime import date
                from decimal import Decimal


                def read_transactions(path):
                    with open(path, newline="", encoding="utf-8") as f:
                        for row in csv.DictReader(f):
                            yield {
                                "date": date.fromisoformat(row["date"]),
                                "description": row["description"],
                                "category": row["category"],
                                "amount": Decimal(row["amount"]),
                            }
                """,
            )
            + "\n\nUsing `Decimal` avoids rounding errors in money amounts."
        ),
        instruction("Total the amounts by month and category, and flag large transactions."),
        solution(
            fenced(
                "python",
                """
                from collections import defaultdict

                LIMIT = Decimal("5000")


                def summarise(transactions):
                    totals = defaultdict(Decimal)
                    flagged = []
                    for t in transactions:
                        month = t["date"].strftime("%Y-%m")
                        totals[(month, t["category"])] += t["amount"]
                        if t["amount"] > LIMIT:
                            flagged.append(t)
                    return totals, flagged
                """,
            )
            + "\n\nThe keys of `totals` are (month, category) pairs."
        ),
        instruction("Write the summary to a CSV file, sorted by month and then category."),
        solution(
            fenced(
                "python",
                """
                def write_summary(totals, path):
                    with open(path, "w", newline="", encoding="utf-8") as f:
                        writer = csv.writer(f)
                        writer.writerow(["month", "category", "total"])
                        for (month, category), total in sorted(totals.items()):
                            writer.writerow([month, category, f"{total:.2f}"])
                """,
            ),
            end=" Next request.",
        ),
        TASK_DONE,
    ],
    termination=TASK_DONE,
)

CTR_REPORT = chat(
    "004_017_030",
    assistant="JavaScript",
    user="Marketing",
    original_task="Calculate the click-through rate of ad campaigns.",
    specified_task="""JavaScript Programmer will write browser code that takes daily campaign
        statistics, computes the click-through rate per campaign and highlights campaigns
        below 1% in a table on the marketing dashboard.""",
    messages=[
        instruction(
            "Write a function that computes the click-through rate of each campaign.",
            "An array of objects like {campaign: 'spring_sale', impressions: 12000, clicks: 150}.",
        ),
        solution(
            fenced(
                "javascript",
                """
                function clickThroughRates(rows) {
                  const totals = new Map();
                  for (const { campaign, impressions, clicks } of rows) {
                    const t = totals.get(campaign) ?? { impressions: 0, clicks: 0 };
                    t.impressions += impressions;
                    t.clicks += clicks;
                    totals.set(campaign, t);
                  }
                  return [...totals].map(([campaign, t]) => ({
                    campaign,
                    ctr: t.impressions === 0 ? 0 : (100 * t.clicks) / t.impressions,
                  }));
                }
                """,
            )
            + "\n\nThe rate is a percentage; a campaign with no impressions gets 0."
        ),
        instruction("Render the results as an HTML table and highlight rates below 1%."),
        solution(
            fenced(
                "javascript",
                """
                function renderTable(rates, table) {
                  table.innerHTML = "<tr><th>Campaign</th><th>CTR</th></tr>";
                  for (const { campaign, ctr } of rates) {
                    const row = table.insertRow();
                    row.insertCell().textContent = campaign;
                    row.insertCell().textContent = ctr.toFixed(2) + "%";
                    if (ctr < 1) row.classList.add("low-ctr");
                  }
                }
                """,
            )
            + "\n\nAdd a CSS rule such as `.low-ctr { background: #fde2e2; }` for the highlight."
        ),
        instruction("Sort the table so that the lowest rates come first."),
        solution("Sort before rendering: `rates.sort((a, b) => a.ctr - b.ctr);`"),
    ],
    termination="max_num_messages",
)

NO_SHOW_QUERY = chat(
    "011_042_007",
    assistant="SQL",
    user="Healthcare",
    original_task="Analyse patient appointment no-shows.",
    specified_task="""SQL Programmer will write queries for a clinic manager that compute the
        monthly no-show rate per department from the appointments table and list patients
        with three or more missed appointments in the last year.""",
    messages=[
        instruction(
            "Write a query for the monthly no-show rate per department.",
            "Table appointments(id, patient_id, department, scheduled_at, status) where "
            "status is 'attended', 'cancelled' or 'no_show'.",
        ),
        solution(
            fenced(
                "sql",
                """
                SELECT department,
                       DATE_TRUNC('month', scheduled_at) AS month,
                       ROUND(100.0 * SUM(CASE WHEN status = 'no_show' THEN 1 ELSE 0 END)
                             / NULLIF(SUM(CASE WHEN status <> 'cancelled' THEN 1 ELSE 0 END), 0), 1)
                           AS no_show_rate
                FROM appointments
                GROUP BY department, month
                ORDER BY month, department;
                """,
            )
            + "\n\nCancelled appointments are left out of the denominator."
        ),
        instruction("List patients with three or more no-shows in the last 12 months."),
        solution(
            fenced(
                "sql",
                """
                SELECT patient_id, COUNT(*) AS no_shows
                FROM appointments
                WHERE status = 'no_show'
                  AND scheduled_at >= CURRENT_DATE - INTERVAL '12 months'
                GROUP BY patient_id
                HAVING COUNT(*) >= 3
                ORDER BY no_shows DESC;
                """,
            )
        ),
        TASK_DONE,
    ],
    termination=TASK_DONE,
)

CODE_CHAT = [EXPENSE_SCRIPT, CTR_REPORT, NO_SHOW_QUERY]


# ---------------------------------------------------------------------------------------
# CAMEL science format (math, physics, chemistry, biology): one problem per file. Note the
# key `topic;` really ends with a semicolon, and message_1/message_2 are plain strings.


def problem(role: str, topic: str, sub_topic: str, question: str, answer: str) -> dict[str, str]:
    return {
        "role_1": f"{role}_RoleType.ASSISTANT",
        "topic;": topic,
        "sub_topic": sub_topic,
        "message_1": " ".join(question.split()),
        "message_2": answer,
    }


SCIENCE: dict[str, dict[str, dict[str, str]]] = {
    "math": {
        "001_004_017.json": problem(
            "Mathematician",
            "Algebra",
            "Solving linear equations",
            "Solve for x: 3x + 7 = 22.",
            "Subtract 7 from both sides: 3x = 15.\n\nDivide both sides by 3: x = 5.\n\n"
            "Check: 3(5) + 7 = 15 + 7 = 22, so x = 5.",
        ),
        "006_002_031.json": problem(
            "Mathematician",
            "Calculus",
            "Finding the derivative of a function",
            "Find the derivative of f(x) = 4x^3 - 2x^2 + 5x - 1 and evaluate it at x = 2.",
            "Differentiate term by term with the power rule:\n\n"
            "f'(x) = 12x^2 - 4x + 5\n\n"
            "At x = 2: f'(2) = 12(4) - 4(2) + 5 = 48 - 8 + 5 = 45.",
        ),
        "019_011_008.json": problem(
            "Mathematician",
            "Probability",
            "Probability of a certain event occurring",
            """A fair six-sided die is rolled twice. What is the probability that the two rolls
            add up to 8?""",
            "There are 6 x 6 = 36 equally likely outcomes. The pairs that add up to 8 are "
            "(2,6), (3,5), (4,4), (5,3) and (6,2), which is 5 outcomes.\n\n"
            "P(sum = 8) = 5/36 ≈ 0.139.",
        ),
    },
    "physics": {
        "002_007_014.json": problem(
            "Physicist",
            "Classical mechanics",
            "Projectile motion",
            """A ball is thrown horizontally at 15 m/s from the top of a 20 m high cliff. How far
            from the base of the cliff does it land? Use g = 9.8 m/s^2 and ignore air
            resistance.""",
            "The vertical motion gives the time of flight: h = g t^2 / 2, so\n"
            "t = sqrt(2h / g) = sqrt(2 x 20 / 9.8) = sqrt(4.08) ≈ 2.02 s.\n\n"
            "The horizontal velocity stays constant, so the horizontal distance is\n"
            "x = v t = 15 x 2.02 ≈ 30.3 m.\n\nThe ball lands about 30 m from the base.",
        ),
        "011_003_020.json": problem(
            "Physicist",
            "Thermodynamics",
            "Specific heat capacity",
            """How much heat is needed to warm 2.0 kg of water from 20 °C to 80 °C? The specific
            heat capacity of water is 4186 J/(kg·K).""",
            "Q = m c ΔT = 2.0 kg x 4186 J/(kg·K) x 60 K = 502,320 J ≈ 502 kJ.",
        ),
        "014_009_002.json": problem(
            "Physicist",
            "Electromagnetism",
            "Resistors in parallel",
            """A 6 Ω resistor and a 3 Ω resistor are connected in parallel across a 12 V battery.
            Find the equivalent resistance and the current through each resistor.""",
            "Equivalent resistance: 1/R = 1/6 + 1/3 = 1/2, so R = 2 Ω.\n\n"
            "Total current: I = V / R = 12 / 2 = 6 A.\n\n"
            "Each resistor has the full 12 V across it: I_6 = 12 / 6 = 2 A and "
            "I_3 = 12 / 3 = 4 A, which add up to 6 A.",
        ),
    },
    "chemistry": {
        "003_005_011.json": problem(
            "Chemist",
            "Stoichiometry",
            "Limiting reactant",
            """4.0 g of hydrogen gas reacts with 16.0 g of oxygen gas to form water. Which
            reactant is limiting, and what mass of water is formed?""",
            "The reaction is 2 H2 + O2 → 2 H2O.\n\n"
            "Moles of H2 = 4.0 / 2.016 = 1.98 mol; moles of O2 = 16.0 / 32.00 = 0.500 mol.\n\n"
            "Reacting 1.98 mol of H2 would need 0.99 mol of O2, but only 0.500 mol is "
            "available, so oxygen is the limiting reactant.\n\n"
            "Water formed = 2 x 0.500 = 1.00 mol, which is 1.00 x 18.02 = 18.0 g.",
        ),
        "008_014_026.json": problem(
            "Chemist",
            "Chemical equilibrium",
            "pH of a weak acid solution",
            "Calculate the pH of a 0.10 M acetic acid solution. Ka = 1.8 x 10^-5.",
            "For a weak acid, [H+] ≈ sqrt(Ka x C) = sqrt(1.8 x 10^-5 x 0.10) = "
            "sqrt(1.8 x 10^-6) ≈ 1.34 x 10^-3 M.\n\n"
            "pH = -log(1.34 x 10^-3) ≈ 2.87.\n\n"
            "The approximation holds because 1.34 x 10^-3 is less than 5% of 0.10.",
        ),
        "012_001_005.json": problem(
            "Chemist",
            "Thermochemistry",
            "Hess's law",
            """Use Hess's law to find the enthalpy change of C(s) + 1/2 O2(g) → CO(g), given
            C(s) + O2(g) → CO2(g), ΔH = -393.5 kJ/mol and CO(g) + 1/2 O2(g) → CO2(g),
            ΔH = -283.0 kJ/mol.""",
            "Keep the first reaction and reverse the second:\n\n"
            "C(s) + O2(g) → CO2(g)   ΔH = -393.5 kJ/mol\n"
            "CO2(g) → CO(g) + 1/2 O2(g)   ΔH = +283.0 kJ/mol\n\n"
            "Adding them gives C(s) + 1/2 O2(g) → CO(g) with "
            "ΔH = -393.5 + 283.0 = -110.5 kJ/mol.",
        ),
    },
    "biology": {
        "004_010_003.json": problem(
            "Biologist",
            "Genetics",
            "Mendelian inheritance",
            """In pea plants, tall (T) is dominant over short (t). Two heterozygous tall plants
            are crossed. What proportion of the offspring will be tall?""",
            "The cross is Tt x Tt. The Punnett square gives TT : Tt : tt in the ratio "
            "1 : 2 : 1.\n\nTT and Tt plants are tall, so 3/4 (75%) of the offspring are tall "
            "and 1/4 (25%) are short.",
        ),
        "009_006_019.json": problem(
            "Biologist",
            "Cell biology",
            "Cellular respiration",
            """How many ATP molecules does the complete aerobic respiration of one glucose
            molecule produce, and where are they made?""",
            "About 30 to 32 ATP in total:\n\n"
            "1. Glycolysis (cytoplasm): a net gain of 2 ATP.\n"
            "2. Citric acid cycle (mitochondrial matrix): 2 ATP (or GTP).\n"
            "3. Oxidative phosphorylation (inner mitochondrial membrane): about 26 to 28 ATP, "
            "driven by the NADH and FADH2 produced in the earlier stages.\n\n"
            "Older textbooks give 36 to 38, which assumed a higher yield per NADH.",
        ),
        "021_013_027.json": problem(
            "Biologist",
            "Ecology",
            "Population growth",
            """A rabbit population of 500 grows exponentially with an intrinsic growth rate
            r = 0.2 per year. What will the population be after 5 years?""",
            "Exponential growth: N(t) = N0 e^(rt) = 500 x e^(0.2 x 5) = 500 x e^1 ≈ "
            "500 x 2.718 ≈ 1359 rabbits.",
        ),
    },
}


# ---------------------------------------------------------------------------------------
# ShareGPT raw crawl (HTML_cleaned_raw_dataset/sg_90k_part{1,2}.json): a JSON array of
# {"id", "conversations": [{"from", "value"}]}; the gpt values are the chat page's HTML.

MARKDOWN_DIV = '<div class="markdown prose w-full break-words dark:prose-invert light">'
# Shares from early 2023 carry a per-request class on the same div.
EARLY_DIV = '<div class="request-:r0:-0 markdown prose dark:prose-invert break-words dark">'
COPY_ICON = (
    '<svg stroke="currentColor" fill="none" stroke-width="2" viewBox="0 0 24 24" '
    'stroke-linecap="round" stroke-linejoin="round" class="h-4 w-4" height="1em" width="1em" '
    'xmlns="http://www.w3.org/2000/svg"><path d="M16 4h2a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H6a2 '
    '2 0 0 1-2-2V6a2 2 0 0 1 2-2h2"></path><rect x="8" y="2" width="8" height="4" rx="1" '
    'ry="1"></rect></svg>'
)
_KEYWORDS = re.compile(r"\b(def|return|import|from|for|in|if|with|as|print|open)\b")


def answer(*blocks: str, div: str = MARKDOWN_DIV, prefix: str = "") -> str:
    """A ChatGPT answer as the crawler saved it; `prefix` is page text before the answer."""
    return f"{prefix}{div}{''.join(blocks)}</div>"


def p(text: str) -> str:
    return f"<p>{' '.join(text.split())}</p>"


def ol(*items: str) -> str:
    return "<ol>" + "".join(f"<li>{' '.join(i.split())}</li>" for i in items) + "</ol>"


def ul(*items: str) -> str:
    return "<ul>" + "".join(f"<li>{' '.join(i.split())}</li>" for i in items) + "</ul>"


def code_block(lang: str, source: str) -> str:
    """ChatGPT's code box: language label and a `Copy code` button above highlighted code."""
    escaped = html.escape(textwrap.dedent(source).strip() + "\n", quote=False)
    highlighted = _KEYWORDS.sub(r'<span class="hljs-keyword">\1</span>', escaped)
    return (
        '<pre><div class="bg-black mb-4 rounded-md">'
        '<div class="flex items-center relative text-gray-200 bg-gray-800 px-4 py-2 text-xs '
        f'font-sans"><span class="">{lang}</span><button class="flex ml-auto gap-2">'
        f"{COPY_ICON}Copy code</button></div>"
        '<div class="p-4 overflow-y-auto">'
        f'<code class="!whitespace-pre hljs language-{lang}">{highlighted}</code>'
        "</div></div></pre>"
    )


def human(text: str) -> dict[str, str]:
    return {"from": "human", "value": text}


def gpt(value: str) -> dict[str, str]:
    return {"from": "gpt", "value": value}


CSV_QUESTION = "How do I read a large CSV file in Python without loading it all into memory?"

TIRE_CONVERSATION = [
    human("What are the steps to change a flat tire?"),
    gpt(
        answer(
            p("Here are the basic steps to change a flat tire safely:"),
            ol(
                "<p>Park on flat, firm ground away from traffic, switch on the hazard lights "
                "and apply the parking brake.</p>",
                "<p>Loosen the wheel nuts half a turn with the wrench while the wheel is still "
                "on the ground.</p>",
                "<p>Place the jack under the jacking point shown in the owner's manual and "
                "raise the car until the tire is just off the ground.</p>",
                "<p>Remove the nuts and the flat tire, fit the spare, and tighten the nuts by hand.</p>",
                "<p>Lower the car and tighten the nuts fully in a star pattern.</p>",
            ),
            p(
                "Check the spare's pressure as soon as you can; many spares are only meant "
                "for short distances at reduced speed."
            ),
            prefix="1 / 2",  # the page's regenerate counter, saved with the answer
        )
    ),
]

SHAREGPT_PART1: list[dict[str, Any]] = [
    {
        "id": "Bx7sKq2",
        "conversations": [
            human(CSV_QUESTION),
            gpt(
                answer(
                    p(
                        "You can read the file in chunks with <code>pandas</code>. The "
                        "<code>chunksize</code> argument makes <code>read_csv</code> return an "
                        "iterator of smaller DataFrames:"
                    ),
                    code_block(
                        "python",
                        """
                        import pandas as pd

                        total = 0
                        for chunk in pd.read_csv("big.csv", chunksize=100_000):
                            total += chunk["amount"].sum()
                        print(total)
                        """,
                    ),
                    p(
                        "Only one chunk is in memory at a time, so the memory use depends on "
                        "the chunk size rather than on the size of the file."
                    ),
                )
            ),
            human("Can you show the same thing with only the standard library?"),
            gpt(
                answer(
                    p("Yes, the <code>csv</code> module reads one row at a time:"),
                    code_block(
                        "python",
                        """
                        import csv

                        total = 0.0
                        with open("big.csv", newline="") as f:
                            for row in csv.DictReader(f):
                                total += float(row["amount"])
                        print(total)
                        """,
                    ),
                    p(
                        "This is slower than pandas for heavy computation, but it needs almost "
                        "no memory and no extra packages."
                    ),
                )
            ),
        ],
    },
    {
        "id": "a3Fh9Lm",
        "conversations": [
            human("Peux-tu m'expliquer la différence entre un prêt à taux fixe et un prêt à taux variable ?"),
            gpt(
                answer(
                    p(
                        "Bien sûr. La différence tient à l'évolution du taux d'intérêt pendant "
                        "la durée du prêt :"
                    ),
                    ul(
                        "<strong>Taux fixe</strong> : le taux est fixé à la signature et ne "
                        "change plus. Vos mensualités restent identiques jusqu'à la fin, ce qui "
                        "facilite la gestion de votre budget.",
                        "<strong>Taux variable</strong> : le taux suit un indice de référence "
                        "et peut monter ou baisser. Les mensualités ou la durée du prêt "
                        "changent en conséquence.",
                    ),
                    p(
                        "Le taux fixe protège contre une hausse des taux ; le taux variable "
                        "peut coûter moins cher si les taux baissent, mais il comporte un "
                        "risque."
                    ),
                    div=EARLY_DIV,
                )
            ),
        ],
    },
    {
        "id": "QzT0pWv",
        "conversations": [
            human("用简单的话解释一下什么是机器学习。"),
            gpt(
                answer(
                    p(
                        "机器学习是让计算机从数据中自己总结规律的方法，而不是由人把每一条规则都写"
                        "出来。举个例子："
                    ),
                    ol(
                        "给计算机看成千上万封已经标好“垃圾邮件”或“正常邮件”的邮件；",
                        "计算机从中找出区分两类邮件的特征；",
                        "之后遇到新邮件时，它就能自己判断是不是垃圾邮件。",
                    ),
                )
            ),
            human("它和深度学习有什么区别？"),
            gpt(
                answer(
                    p(
                        "深度学习是机器学习的一个分支。它使用多层的神经网络，能够直接从图片、声音"
                        "或文字等原始数据中学习特征，但通常需要更多的数据和算力。"
                    )
                )
            ),
        ],
    },
    {
        "id": "k9LmN2p",
        "conversations": [
            human("Hi ChatGPT, can you write a haiku about autumn rain?"),
            gpt(answer(p("Soft rain on red leaves<br>the street lamps blur into gold<br>umbrellas bloom"))),
        ],
    },
    {
        # The share starts with an answer whose question was not captured.
        "id": "J4wE8rT",
        "conversations": [
            gpt(answer(p("Sure, I can help with questions about mountains and weather."))),
            human("What is the boiling point of water at the top of Mount Everest?"),
            gpt(
                answer(
                    p(
                        "At the summit of Mount Everest the air pressure is only about a third "
                        "of the pressure at sea level, so water boils at roughly 70 °C (158 °F) "
                        "instead of 100 °C."
                    ),
                    p(
                        "That is why cooking food by boiling takes much longer at high "
                        "altitude, and why climbers often use pressure cookers."
                    ),
                )
            ),
        ],
    },
    {
        # The share ends with a question that has no answer.
        "id": "mP3xY6c",
        "conversations": [
            human("Give me three tips for writing clear emails."),
            gpt(
                answer(
                    ol(
                        "<strong>Put the main point first.</strong> Say what you need in the "
                        "first two sentences.",
                        "<strong>Use one email per topic.</strong> Separate requests are easier "
                        "to answer and to find later.",
                        "<strong>Make the next step obvious.</strong> End with the action you "
                        "expect and a date if there is one.",
                    )
                )
            ),
            human("Thanks! Now make them shorter."),
        ],
    },
    {"id": "T8uJ2hQ", "conversations": TIRE_CONVERSATION},
]

SHAREGPT_PART2: list[dict[str, Any]] = [
    {
        # Same id as a share in part 1: the crawl caught it twice.
        "id": "Bx7sKq2",
        "conversations": [
            human(CSV_QUESTION),
            gpt(
                answer(
                    p(
                        "Use the <code>chunksize</code> argument of "
                        "<code>pandas.read_csv</code> to process the file piece by piece."
                    )
                )
            ),
        ],
    },
    # Same conversation as T8uJ2hQ under a different id: a duplicate by content.
    {"id": "W2sD5gB", "conversations": TIRE_CONVERSATION},
    {"id": "Hn6yR0e", "conversations": [human("Translate 'good morning' into Spanish.")]},
    {
        "id": "Lc4Vb7s",
        "conversations": [
            human("Explain what a list comprehension is in Python."),
            gpt(
                answer(
                    p(
                        "A list comprehension builds a new list from an iterable in a single "
                        "expression. It has the form <code>[expression for item in iterable "
                        "if condition]</code>."
                    ),
                    code_block(
                        "python",
                        """
                        squares = [n * n for n in range(10) if n % 2 == 0]
                        print(squares)  # [0, 4, 16, 36, 64]
                        """,
                    ),
                    p(
                        "It is equivalent to a <code>for</code> loop that appends to a list, "
                        "but shorter and usually faster."
                    ),
                )
            ),
            human("When should I not use one?"),
            gpt(
                answer(
                    p(
                        "Avoid a list comprehension when the logic needs several nested loops "
                        "and conditions, when you only need to iterate once (a generator "
                        "expression saves memory), or when the loop exists for its side "
                        "effects, such as printing or writing files."
                    )
                )
            ),
        ],
    },
]


# ---------------------------------------------------------------------------------------
# Alpaca (tatsu-lab/alpaca data/train-00000-of-00001-a09b74b3ef9c3b56.parquet): columns
# instruction, input, output and text, the prompt pre-rendered in Alpaca's format.

ALPACA_INTRO = "Below is an instruction that describes a task"
ALPACA_ROWS: list[tuple[str, str, str]] = [
    (
        "Give two examples of renewable energy sources.",
        "",
        "Two examples of renewable energy sources are solar power, which converts sunlight "
        "into electricity with photovoltaic panels, and wind power, which uses turbines to turn "
        "the movement of air into electricity.",
    ),
    (
        "Summarize the following paragraph in one sentence.",
        "The city council met on Tuesday to discuss the new bike lane proposal. After two "
        "hours of debate, members voted seven to two in favor of building protected lanes on "
        "Main Street, with construction expected to begin next spring.",
        "On Tuesday the city council voted seven to two to build protected bike lanes on Main "
        "Street, with construction expected to start next spring.",
    ),
    ("Convert the temperature from Fahrenheit to Celsius.", "98.6°F", "98.6°F is 37°C."),
    (
        "Write a haiku about a quiet library.",
        "",
        "Pages softly turn,\ndust drifts in a beam of light,\nwhispers find their shelf.",
    ),
    (
        "Classify the following animals as mammals or reptiles.",
        "dolphin, iguana, bat, tortoise",
        "Mammals: dolphin, bat.\nReptiles: iguana, tortoise.",
    ),
    (
        "Explain why the sky appears blue during the day.",
        "",
        "Sunlight contains all colors of light. When it passes through the atmosphere, the "
        "short blue wavelengths are scattered by gas molecules much more strongly than the "
        "longer red wavelengths. This scattered blue light reaches our eyes from every "
        "direction, so the sky looks blue.",
    ),
    (
        "Rewrite the sentence in the passive voice.",
        "The committee approved the budget on Friday.",
        "The budget was approved by the committee on Friday.",
    ),
    (
        "Generate a list of three questions to ask at the end of a job interview.",
        "",
        "1. What does a typical day look like for someone in this role?\n"
        "2. How will my performance be measured in the first six months?\n"
        "3. What are the biggest challenges the team is facing right now?",
    ),
]


def alpaca_text(instruction_: str, input_: str, output: str) -> str:
    """The `text` column: the full Alpaca prompt, with the Input section only when non-empty."""
    if input_:
        return (
            f"{ALPACA_INTRO}, paired with an input that provides further context. Write a "
            "response that appropriately completes the request.\n\n"
            f"### Instruction:\n{instruction_}\n\n### Input:\n{input_}\n\n### Response:\n{output}"
        )
    return (
        f"{ALPACA_INTRO}. Write a response that appropriately completes the request.\n\n"
        f"### Instruction:\n{instruction_}\n\n### Response:\n{output}"
    )


# ---------------------------------------------------------------------------------------
# KAgentInstruct (kwaiagent_train_data.json): a JSON array of agent steps.


def function_spec(name: str, description: str, **params: str) -> str:
    """A function spec as the dataset stores it: a JSON object encoded into a string."""
    properties = {k: {"type": "string", "description": v} for k, v in params.items()}
    spec = {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(params)},
    }
    return json.dumps(spec, ensure_ascii=False)


def step(instruction_: str, input_: str, output: Any, llm: str, edited: bool) -> dict[str, Any]:
    """One prompt/response step; a dict output is stored as its JSON text, as the agent wrote it."""
    if not isinstance(output, str):
        output = json.dumps(output, ensure_ascii=False)
    return {
        "instruction": instruction_,
        "input": input_,
        "output": output,
        "llm_name": llm,
        "human_edited": edited,
    }


JSON_REPLY_FORMAT = (
    '{"task_name": "当前子任务的名称", "command": {"name": "工具名称", "args": {"参数名": "参数值"}}}'
)
WEATHER_QUERY = "杭州明天会下雨吗？适合去西湖划船吗？"
WEATHER_TOOLS = [
    function_spec(
        "get_weather_info",
        "查询指定城市某一天的天气预报",
        city="城市名称，例如：杭州",
        date="日期，格式为 YYYY-MM-DD，或 今天/明天",
    ),
    function_spec("web_search", "在互联网上搜索信息，返回相关网页的摘要", query="搜索关键词"),
]


def weather_prompt(done: str) -> str:
    return (
        "当前时间：2023-11-02 星期四\n\n"
        "你需要根据用户的问题，从下面的工具中选择一个合适的工具来完成下一步任务。\n"
        "工具列表：\n"
        "1. get_weather_info: 查询指定城市某一天的天气预报，参数：city, date\n"
        "2. web_search: 在互联网上搜索信息，参数：query\n"
        "3. task_complete: 当已经可以回答用户问题时调用，参数：answer\n\n"
        f"用户问题：{WEATHER_QUERY}\n\n"
        f"已经完成的步骤：\n{done}\n\n"
        f"请只用下面的 JSON 格式回答，不要输出其他内容：\n{JSON_REPLY_FORMAT}"
    )


WEATHER_OBSERVATION = (
    '{"city": "杭州", "date": "2023-11-03", "weather": "小雨转阴", '
    '"temperature": "14~19℃", "wind": "东北风 3 级"}'
)

KAGENT_SYSTEM = "你是快手开发的智能助手，擅长调用工具解决用户的问题。"

REACT_FORMAT = (
    "Answer the question below. You can use these tools:\n\n"
    "calculator: evaluates an arithmetic expression and returns the number\n"
    "search: looks up a query on the web and returns short snippets\n\n"
    "Reply in this format:\n"
    "Thought: what you should do next\n"
    "Action: one of [calculator, search]\n"
    "Action Input: the input for the action\n"
    "Observation: the result of the action\n"
    "(Thought, Action, Action Input and Observation may repeat)\n"
    "Thought: I now know the final answer\n"
    "Final Answer: the answer to the question\n\n"
    "Question: How many seconds are there in 3.5 days?\n"
)
REACT_STEP_1 = (
    "Thought: I need to multiply 3.5 days by 24 hours and by 3600 seconds per hour.\n"
    "Action: calculator\nAction Input: 3.5 * 24 * 3600"
)

TRIP_PROMPT = (
    "You are TripPlanner, an agent that plans family trips step by step.\n\n"
    "Goals:\n1. Plan a three-day itinerary that suits young children.\n"
    "2. Keep travel time between places short.\n\n"
    "Constraints:\n1. Use only the commands listed below.\n"
    "2. Finish with the finish command when the plan is complete.\n\n"
    "Commands:\n"
    '1. search_attractions: find attractions, args: "city": "<city>", "audience": "<audience>"\n'
    '2. get_transport_info: travel time between two places, args: "from": "<place>", '
    '"to": "<place>"\n'
    '3. finish: return the final plan, args: "plan": "<plan>"\n\n'
    "Respond only in JSON in this format:\n"
    '{"task_name": "the current sub-task", "command": {"name": "command name", '
    '"args": {"arg name": "value"}}}\n'
    "The response must be parseable by Python json.loads.\n\n"
    "Query: Plan a three-day trip to Kyoto for a family with two young children."
)

BAKERY_PROFILE = (
    "你现在扮演“麦香社区面包店”的客服小麦。\n"
    "人物设定：热情、耐心，说话简洁，称呼顾客为“您”。\n"
    "店铺信息：周一至周五 7:00-20:00 营业，周六日 8:00-21:00 营业；"
    "每天供应全麦面包和黑麦面包，无糖系列只有全麦吐司和杂粮欧包。\n"
    "如果顾客的问题超出店铺信息，请礼貌地建议顾客到店或致电询问。\n\n"
    "顾客：你们店周末几点开门？有没有无糖的面包？\n小麦："
)

KAGENT_RECORDS: list[dict[str, Any]] = [
    {
        "id": "kwai-agent-0000184",
        "query": WEATHER_QUERY,
        "source": "kwai-agent",
        "functions": WEATHER_TOOLS,
        "function_names": ["get_weather_info", "web_search"],
        "llm_prompt_response": [
            step(
                KAGENT_SYSTEM,
                weather_prompt("无"),
                {
                    "task_name": "查询杭州明天的天气",
                    "command": {
                        "name": "get_weather_info",
                        "args": {"city": "杭州", "date": "明天"},
                    },
                },
                "gpt4",
                False,
            ),
            step(
                KAGENT_SYSTEM,
                weather_prompt(f"1. 查询杭州明天的天气：{WEATHER_OBSERVATION}"),
                {
                    "task_name": "总结天气并给出划船建议",
                    "command": {
                        "name": "task_complete",
                        "args": {
                            "answer": "杭州明天（11月3日）小雨转阴，气温14~19℃，东北风3级。"
                            "上午有小雨，湖面湿滑，不太适合划船；如果想去，建议下午雨停后再去，"
                            "并带好雨具。"
                        },
                    },
                },
                "gpt4",
                True,
            ),
        ],
        "extra_infos": {},
    },
    {
        "id": "meta-agent-0003921",
        "query": "Plan a three-day trip to Kyoto for a family with two young children.",
        "source": "meta-agent",
        "functions": [],
        "function_names": [],
        "llm_prompt_response": [
            step(
                "",
                TRIP_PROMPT,
                {
                    "task_name": "Find child-friendly attractions in Kyoto",
                    "command": {
                        "name": "search_attractions",
                        "args": {"city": "Kyoto", "audience": "families with young children"},
                    },
                },
                "gpt3.5",
                False,
            )
        ],
        "extra_infos": {},
    },
    {
        "id": "react-0012077",
        "query": "How many seconds are there in 3.5 days?",
        "source": "react",
        "functions": [
            function_spec("calculator", "Evaluate an arithmetic expression", expression="the expression"),
            function_spec("search", "Search the web and return short snippets", query="the query"),
        ],
        "function_names": ["calculator", "search"],
        "llm_prompt_response": [
            step("", REACT_FORMAT + "Thought:", REACT_STEP_1.removeprefix("Thought: "), "gpt4", False),
            step(
                "",
                f"{REACT_FORMAT}{REACT_STEP_1}\nObservation: 302400.0\nThought:",
                " I now know the final answer\nFinal Answer: There are 302,400 seconds in 3.5 days.",
                "gpt4",
                False,
            ),
        ],
        "extra_infos": {},
    },
    {
        "id": "profile-0000562",
        "query": "你们店周末几点开门？有没有无糖的面包？",
        "source": "profile",
        "functions": [
            function_spec("query_store_info", "查询店铺的营业时间和商品信息", topic="要查询的内容"),
        ],
        "function_names": ["query_store_info"],
        "llm_prompt_response": [
            step(
                "",
                BAKERY_PROFILE,
                "您好！我们周六、周日早上 8:00 开门，营业到晚上 9:00。无糖的面包有全麦吐司和杂粮"
                "欧包两种，周末也有供应，欢迎您来选购～",
                "gpt4",
                True,
            )
        ],
        "extra_infos": {},
    },
]


# ---------------------------------------------------------------------------------------
# Writers: every byte is fixed (timestamps, owners, member order), so rebuilds are identical.


def json_bytes(obj: Any, *, indent: int = 4, ensure_ascii: bool = True) -> bytes:
    return (json.dumps(obj, indent=indent, ensure_ascii=ensure_ascii) + "\n").encode("utf-8")


def _tar_info(name: str, size: int, *, folder: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o755 if folder else 0o644
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def tar_gz_bytes(members: dict[str, bytes], folder: str | None = None) -> bytes:
    """A gzip'd tar of `members` (sorted), optionally all inside one top-level `folder`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if folder:
            tar.addfile(_tar_info(folder, 0, folder=True))
        for name in sorted(members):
            data = members[name]
            path = f"{folder}/{name}" if folder else name
            tar.addfile(_tar_info(path, len(data)), io.BytesIO(data))
    out = io.BytesIO()
    # filename="" and a fixed mtime keep the gzip header free of the build's name and time.
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=FIXED_MTIME) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever machine builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return out.getvalue()


def parquet_bytes(rows: Sequence[tuple[str, str, str]]) -> bytes:
    columns = ("instruction", "input", "output", "text")
    values = [(*row, alpaca_text(*row)) for row in rows]
    # The Hub's parquet files carry the `datasets` feature description in their metadata.
    features = {c: {"dtype": "string", "_type": "Value"} for c in columns}
    schema = pa.schema(
        [pa.field(c, pa.string()) for c in columns],
        metadata={"huggingface": json.dumps({"info": {"features": features}})},
    )
    table = pa.table({c: [v[i] for v in values] for i, c in enumerate(columns)}, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _conv_id(record: dict[str, Any]) -> str:
    return record.get("id") or record["input"]


def sample_files() -> dict[str, bytes]:
    """Every sample file, by its path relative to the download directory."""
    files = {
        "ai_society_chat.tar.gz": tar_gz_bytes({f"{_conv_id(c)}.json": json_bytes(c) for c in AI_SOCIETY}),
        # Wrapped in a top-level folder: the real layout is unverified, both must work.
        "code_chat.tar.gz": tar_gz_bytes(
            {f"{_conv_id(c)}.json": json_bytes(c) for c in CODE_CHAT}, folder="code_chat"
        ),
    }
    for name, problems in SCIENCE.items():
        files[f"{name}.zip"] = zip_bytes({f: json_bytes(r) for f, r in problems.items()})
    for part, records in (("part1", SHAREGPT_PART1), ("part2", SHAREGPT_PART2)):
        files[f"HTML_cleaned_raw_dataset/sg_90k_{part}.json"] = json_bytes(
            records, indent=2, ensure_ascii=False
        )
    files["data/train-00000-of-00001-a09b74b3ef9c3b56.parquet"] = parquet_bytes(ALPACA_ROWS)
    files["kwaiagent_train_data.json"] = json_bytes(KAGENT_RECORDS, ensure_ascii=False)
    return files


def build(out_dir: Path) -> list[Path]:
    """Write every sample file under `out_dir`; return their paths."""
    written = []
    for relative, data in sorted(sample_files().items()):
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: %(default)s")
    args = parser.parse_args(argv)
    for path in build(args.out):
        print(f"{path.stat().st_size:>8}  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
