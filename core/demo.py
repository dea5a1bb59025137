"""The offline demo: a call-transcript topic dataset and tiny base models.

No machine here reaches a model hub, so the embedded default builds its base
models locally, each with a tokenizer trained on the demo corpus, saved in the
layout its real model family ships:

- ``demo-bert-tiny``: a BERT with a WordPiece ``tokenizer.json``;
- ``demo-deberta-v2-tiny``: shaped like ``microsoft/deberta-v3-*`` (v3's
  relative-attention config, a SentencePiece ``spm.model``, a
  ``tokenizer_config.json`` naming ``DebertaV2Tokenizer`` and no
  ``tokenizer.json``), so loading it walks the real v3 tokenizer path.

The pipeline loads them exactly like a real checkpoint folder. Their heads
carry the zero-shot NLI labels (``entailment`` / ``not_entailment``) so label
alignment works as it does for the real models.

The dataset is in the seed's shape: premise (a snippet of a customer call),
hypothesis ("This call is about ..."), label (entailment / not_entailment). Beside it, the
kind of calls a team labels (``calls_train.csv``, ``calls_test.csv``: ``call_id, transcript,
topic``, a few calls with two topics in one cell), as long as real calls (300-1,500 words:
greeting, identity checks, holds, the customer's reason somewhere after them, closing;
``make_long_calls``), to train on through a column mapping and topic pairs.
"""

from __future__ import annotations

import csv
import functools
import random
import string
from pathlib import Path

from core.settings import Settings
from core.topic_pairs import NLI_LABELS

LABELS = NLI_LABELS  # the demo models' NLI head
DEMO_MODELS = ("demo-bert-tiny", "demo-deberta-v2-tiny")
DATASET_FILES = ("full_dataset.csv", "train_sample.csv", "test.csv")
CALL_FILES = ("calls_train.csv", "calls_test.csv")  # as a team labels its calls: call_id, transcript, topic
# Where long demo calls would go (make_long_calls); write_dataset does not write them.
LONG_CALL_FILES = ("long_calls_train.csv", "long_calls_test.csv")

TOPICS: dict[str, list[str]] = {
    "account access": [
        "I can't log in to my account", "my password stopped working", "the website locked me out",
        "I need to reset my login", "the security code never arrives", "my username is not recognized",
    ],
    "beneficiary update": [
        "I want to change my beneficiary", "my daughter should be the primary beneficiary",
        "we need to add my spouse as beneficiary", "remove my ex-husband from the beneficiary form",
        "who is listed to inherit this account", "update the beneficiary after my divorce",
    ],
    "loan request": [
        "I would like to borrow from my plan", "how much can I take as a loan",
        "what is the interest on a plan loan", "I need a loan for a house down payment",
        "can I repay the loan early", "apply for a second loan against my balance",
    ],
    "withdrawal": [
        "I want to take money out", "I need a hardship withdrawal", "how do I cash out my balance",
        "send me a distribution check", "what penalty applies if I withdraw now",
        "I'm retiring and want my money paid out",
    ],
    "rollover": [
        "move my old employer plan into this one", "roll my balance into an IRA",
        "transfer funds from my previous provider", "the rollover check arrived and I need to deposit it",
        "consolidate my old accounts here", "start a direct rollover to my new job",
    ],
    "contribution change": [
        "raise my contribution to ten percent", "stop my payroll deferrals", "lower how much I save each paycheck",
        "switch my contributions to Roth", "increase my savings rate next year",
        "change the percentage taken from my salary",
    ],
    "address change": [
        "I moved to a new house", "please update my mailing address", "my statements go to the old address",
        "change my street and zip code", "I relocated to another state", "mail is being returned to you",
    ],
    "fees": [
        "why was I charged this fee", "what are the annual fees on my account", "there is a charge I don't recognize",
        "the maintenance fee seems too high", "explain the expense ratio", "I was billed twice this quarter",
    ],
    "tax forms": [
        "I never got my tax form", "where is my 1099-R", "I need a copy of last year's tax statement",
        "the tax withholding on my form is wrong", "send my tax documents by email",
        "the form shows the wrong amount for taxes",
    ],
    "investment options": [
        "which funds can I choose", "move my money into the bond fund", "rebalance my portfolio",
        "what target date fund fits me", "I want less risk in my investments", "change my fund allocation",
    ],
}

OPENERS = ["hi, thanks for taking my call.", "good morning.", "hello, yes.", "okay so,", "hi there,", "um, yes,"]
CLOSERS = ["can you help me with that?", "what are my options?", "thank you.", "I appreciate it.",
           "how long will it take?", "is that possible today?"]
HYPOTHESES = ["This call is about {}.", "The customer is asking about {}.", "The topic of this call is {}."]


def _premise(rng: random.Random, topic: str) -> str:
    phrases = rng.sample(TOPICS[topic], 2)
    return f"{rng.choice(OPENERS)} {phrases[0]}, and {phrases[1]}. {rng.choice(CLOSERS)}"


def make_examples(n: int, seed: int) -> list[dict[str, str]]:
    """``n`` NLI pairs, half entailment, half naming a different topic.

    As in real call data, some topics are named far more often in wrong
    hypotheses than others (weights rise with the topic's rank), so the task
    has an easy part that a tiny model learns in seconds and a harder part
    (matching the premise to the topic) that rewards more data and epochs.
    """
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    weights = {t: (i + 1) ** 2 for i, t in enumerate(topics)}
    rows = []
    for i in range(n):
        topic = rng.choice(topics)
        premise = _premise(rng, topic)
        entail = i % 2 == 0
        others = [t for t in topics if t != topic]
        named = topic if entail else rng.choices(others, weights=[weights[t] for t in others])[0]
        rows.append({
            "premise": premise,
            "hypothesis": rng.choice(HYPOTHESES).format(named),
            "label": LABELS[0] if entail else LABELS[1],
            "topic": topic,
        })
    rng.shuffle(rows)
    return rows


def make_calls(n: int, seed: int, prefix: str) -> list[dict[str, str]]:
    """``n`` labelled calls as a team keeps them: ``call_id``, ``transcript``, ``topic``; about one call in four
    is about two topics, written in one cell as ``"fees; rollover"``."""
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    rows = []
    for i in range(n):
        about = rng.sample(topics, 2 if rng.random() < 0.25 else 1)
        said = [phrase for topic in about for phrase in rng.sample(TOPICS[topic], 2 if len(about) == 1 else 1)]
        transcript = f"{rng.choice(OPENERS)} {', and '.join(said)}. {rng.choice(CLOSERS)}"
        rows.append({"call_id": f"{prefix}-{i + 1:04d}", "transcript": transcript, "topic": "; ".join(about)})
    return rows


# Long calls: demo transcripts as long as real ones (300-1500 words), where the topic is a few turns lost among an
# opening, identity checks, holds, small talk and a closing. Everything but the topical turns comes from the
# neutral pools below, shared by every topic, and none of it uses a topic's name or a word of its phrases: a model
# can only find the topic by reading the right turns.
# Templates: "A: " starts an agent turn, "C: " a customer turn; {slot} takes the call's own value (its caller's
# name, city, ...) or a draw from _SLOTS; {slot2} draws a second, different value from the same pool.

_COMPANIES = ["Summit Trust Services", "Northwind Benefits", "Bluewater Financial", "Cedar Ridge Benefits Group",
              "Lakeshore Financial Partners", "Ironwood Trust", "Granite Peak Benefits", "Harborview Financial",
              "Meridian Participant Services", "Silver Birch Trust"]
_AGENTS = ["Dana", "Marcus", "Priya", "Kevin", "Alicia", "Tom", "Rosa", "Jamal", "Erin", "Luis", "Grace", "Omar"]
_FIRST = ["Maria", "James", "Linda", "Robert", "Patricia", "Michael", "Susan", "David", "Karen", "Joseph", "Nancy",
          "Thomas", "Angela", "Carlos", "Mei", "Samuel", "Denise", "Walter", "Yolanda", "Raj"]
_LAST = ["Lopez", "Johnson", "Nguyen", "Carter", "Okafor", "Schmidt", "Patel", "Rivera", "Kowalski", "Brooks",
         "Delgado", "Fischer", "Hughes", "Tanaka", "Morrison", "Abbott", "Ferreira", "Lindqvist"]
_ROADS = ["Maple", "Oak", "Birch", "Cedar", "Willow", "Lakeview", "Hillcrest", "Sunset", "Pine", "Magnolia", "Elm"]
_ROAD_KINDS = ["Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way", "Place", "Terrace"]
_CITIES = [("Dayton", "Ohio"), ("Tucson", "Arizona"), ("Spokane", "Washington"), ("Macon", "Georgia"),
           ("Boise", "Idaho"), ("Lansing", "Michigan"), ("Fresno", "California"), ("Madison", "Wisconsin"),
           ("Tulsa", "Oklahoma"), ("Eugene", "Oregon"), ("Mobile", "Alabama"), ("Provo", "Utah")]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]
_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_EMAIL_HOSTS = ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"]
_SECURITY = {
    "what was the name of your first pet": ["Biscuit", "Shadow", "Peanut", "Rocky", "Daisy", "Oreo", "Max"],
    "what city were you born in": ["Cleveland", "El Paso", "Savannah", "Duluth", "Reno", "Baton Rouge"],
    "what is your mother's maiden name": _LAST,
    "what was the make of your first car": ["Ford", "Toyota", "Chevy", "Honda", "Volkswagen", "Buick"],
    "what was the name of your elementary school": ["Lincoln Elementary", "Oak Grove", "Saint Mary's",
                                                    "Jefferson Elementary", "Riverside"],
}

_SLOTS: dict[str, list[str]] = {
    "agree": ["That's fine.", "Sure, no problem.", "Okay, that's fine with me.", "Yep, that's alright.",
              "Understood."],
    "ok": ["Okay.", "Sounds good.", "Alright, thank you.", "Sure, that's fine.", "Great, thanks.", "Mm-hm, okay."],
    "ack": ["Thank you.", "Great.", "Perfect.", "Got it.", "Okay.", "Thanks."],
    "filler": ["um,", "uh,", "so,", "well,", "yeah,", "okay,", "right,", "oh,"],
    "weather": ["sunny and warm", "pouring rain", "cold and windy", "snowing again", "really foggy", "muggy and hot",
                "gray but mild", "freezing", "nice and breezy"],
    "weather_short": ["rain", "snow", "heat", "wind", "cold"],
    "weather_note": ["I can't complain.", "The kids are stuck inside all day.", "My garden could use it, though.",
                     "I'm just glad I'm not driving in it.", "It's supposed to clear up by tonight.",
                     "Perfect day for a walk, honestly."],
    "weather_reply": ["That sounds lovely.", "Stay warm out there.", "Hopefully it clears up soon.",
                      "Lucky you, it's been gloomy here all week.", "I'd trade you in a heartbeat."],
    "email_yes": ["Yes, that's correct.", "Yep, that's me.", "That's right, I look at it every day.",
                  "Yes, that's the one I use.", "Correct."],
    "phone_yes": ["Yes, that's my cell.", "Yes, that works.", "That's right.",
                  "That's my home phone, but yes, that's fine.", "Yep, that's the best one."],
    "minutes": ["fifteen", "twenty", "twenty-five", "thirty", "forty", "forty-five"],
    "busy_reason": ["Mondays are always our busiest day", "We've had a lot of callers since the holiday weekend",
                    "A few of our team members are out sick this week",
                    "The phones have been ringing nonstop since we opened",
                    "We're training some people on the team this week", "Mornings tend to be our busiest time"],
    "wait_tip": ["Usually mid-afternoon is the quietest time to call.", "Calling later in the week is often quicker.",
                 "You can also ask for a callback next time instead of waiting.",
                 "Thursdays tend to be a lot calmer."],
    "wait_ok": ["That's alright, I had the radio on.", "No worries, it happens.",
                "It's fine, I was folding laundry anyway.", "Oh, that's okay, you're here now."],
    "no_rush": ["No rush at all.", "That's okay, I'm not in a hurry.", "Take your time.", "Sure, I'll wait.",
                "Happens to the best of us.", "No problem, I've got time."],
    "slow_note": ["Bear with me for a moment, our system is running really slow today.",
                  "Sorry for the silence, my screen is still loading.",
                  "Our computers have been sluggish all morning, so this may take a minute.",
                  "One moment, the page I need is taking forever to come up.",
                  "I apologize, everything is crawling on my end today.",
                  "Hang on, my screen just froze on me."],
    "still_loading": ["Still spinning... okay, there it is.", "Almost there, thank you for your patience.",
                      "Okay, it's finally caught up.", "There we go, it finally came up.",
                      "Okay, I'm back in business."],
    "day_going": ["Pretty good, just got back from walking the dog.", "Not bad, I'm on my lunch break.",
                  "Busy, the kids have a soccer game later.", "Oh, it's been a long one, but I'm hanging in there.",
                  "Good so far, knock on wood."],
    "day_reply": ["Glad to hear it.", "Well, I'll try to get you on your way quickly.", "Hang in there.",
                  "That's good to hear."],
    "agent_day": ["It's been a busy one.", "We're almost to lunch, so I can't complain.",
                  "I've had great callers today, you included."],
    "weekend": ["We're going to my grandson's birthday party.", "Just relaxing, maybe some fishing.",
                "My sister is visiting from {other_city}.", "Nothing much, probably yard work."],
    "weekend_reply": ["That sounds like fun.", "Oh, that'll be nice.", "Enjoy it, you've earned it."],
    "noise": ["my dog is barking at the delivery truck", "the kids are being loud", "there's a lawnmower going outside",
              "I'm in the car", "I'm walking through a parking lot", "the TV was on, let me turn it down"],
    "team": ["client services", "member support", "customer care", "participant services"],
    "survey_ok": ["Sure, I can do that.", "Okay, I'll keep an eye out.", "Sure, happy to.", "Alright."],
    "hours": ["eight to eight Eastern, Monday through Friday", "seven in the morning until nine at night, weekdays",
              "eight to six, Monday through Saturday"],
    "saturday": ["We are, from nine until one.", "Not on Saturdays, just weekdays, I'm afraid.",
                 "Yes, nine to three Eastern."],
    "hold_ask": ["Can I place you on a quick hold while I look into something?",
                 "Give me just one moment, I'm going to mute for a second.",
                 "Would you mind holding for a minute or two while I confirm something with my supervisor?",
                 "I need to step away for just a moment, is it alright if I put you on hold?"],
    "hold_ok": ["Sure, go ahead.", "Okay, no problem.", "That's fine.", "Sure thing.", "Sure, take your time.",
                "Go right ahead."],
    "hold_back": ["Thanks for waiting, I'm back.", "Thank you for your patience, I appreciate you holding.",
                  "Okay, I'm back, sorry about that.", "Sorry that took a little longer than I expected.",
                  "Alright, thank you so much for holding."],
    "ramble": ["I've been meaning to call for weeks now.", "Sorry, I'm a little scattered today.",
               "My neighbor said it's easier to just call than to wait around.",
               "I'm on my lunch break, so I have about half an hour.", "The kids just got home, so bear with me.",
               "I had to hunt around for the right number to dial.", "My reading glasses are somewhere around here.",
               "I wrote some notes before calling so I wouldn't forget anything.",
               "It's been one of those weeks, honestly.", "My phone battery is a little low, so hopefully it lasts.",
               "I'm not great with computers, so calling is easier for me.",
               "I've got a dentist appointment at three, so I'm watching the clock.",
               "My sister usually helps me with this kind of thing, but she's traveling.",
               "I tried calling yesterday but got disconnected.", "I'm sitting in my car in a parking lot right now.",
               "We just got back from visiting family in {other_city}.",
               "I always get nervous on these calls for some reason.",
               "My husband usually handles the phone calls, but he's at work.",
               "I'm standing in line at the pharmacy, so forgive the noise.",
               "I've got the kettle on, so I might step away for a second.",
               "I kept putting this off, but here I am.", "My friend told me you folks are really helpful.",
               "I'm a bit hard of hearing, so I might ask you to repeat things.",
               "Last time I called, the gentleman was very patient with me.",
               "I've got a pen and paper ready this time.", "Sorry, I'm eating a sandwich while we talk.",
               "The dog wants to go out, but he can wait a minute.",
               "I just got off a long shift, so I'm a little tired."],
    "ramble_reply": ["I completely understand.", "No problem, we'll get through it together.",
                     "I'm glad you called, that's what we're here for.", "Take all the time you need.",
                     "I'll do my best to keep this quick for you.", "That's no trouble at all.",
                     "Oh, don't worry about that one bit.", "You're doing just fine.",
                     "I appreciate you telling me."],
    "agent_note": ["I really appreciate your patience today.", "I'm going to make a few notes as we go.",
                   "Everything we talk about will be noted on your file.",
                   "If anything is unclear, just let me know.",
                   "I want to make sure I get everything right for you.",
                   "I'll walk you through each step as we go.",
                   "Our team reviews these notes, so I like to be thorough.",
                   "I'm just reading through the notes from your earlier calls.",
                   "Once we're done, you'll get a summary of today's call at the email on file.",
                   "I'm typing as we talk, so if I go quiet, I'm still here.",
                   "I see you've been with us for quite a while, thank you for that.",
                   "If you need to step away at any point, just tell me.",
                   "I'm going to repeat a few things back to you, just to be sure.",
                   "I've been doing this for about six years, so you're in good hands.",
                   "Feel free to jump in if you have questions along the way."],
    "talk_reply": ["Ha, fair enough.", "I hear you.", "Oh, nice.", "That makes sense.", "Ha, I know what you mean.",
                   "Well, good.", "Oh, I see."],
    "talk_pets": ["Two cats, both very spoiled.", "A golden retriever named Scout.", "Just a fish tank these days.",
                  "A rescue dog who thinks he runs the place."],
    "talk_home": ["Born and raised.", "Since the nineties, yes.",
                  "Most of my life, except a few years in {other_city}."],
    "talk_where": ["We're based out of {other_city}.", "I'm working from home today, actually.",
                   "Our office is just outside {other_city}."],
    "talk_game": ["I did, what a finish.", "No, I fell asleep at halftime.", "I don't follow sports much, honestly."],
    "talk_holidays": ["Not even close, I haven't bought a single gift.", "Mostly, we're hosting this year.",
                      "We keep it small these days."],
    "talk_dinner": ["Probably leftovers, to be honest.", "My husband is making chili.", "I'm thinking tacos."],
    "talk_garden": ["Tomatoes and peppers, mostly.", "Only when my knees let me.",
                    "My wife is the gardener in the family."],
    "talk_tv": ["A cooking competition, I'm hooked.", "Mostly westerns.", "Nothing, I can never find the remote."],
    "talk_trip": ["We drove up to see the leaves in the fall.", "Just a weekend at the lake.",
                  "Not yet, maybe this summer."],
    "talk_coffee": ["Two cups already.", "I'm more of a tea person.", "Not yet, that's next."],
    "talk_music": ["It's stuck in my head now.", "It was a little loud, honestly.", "I've heard worse."],
    "talk_fun": ["I bowl on Thursdays.", "Crossword puzzles, mostly.", "I volunteer at the library."],
    "verified": ["Thank you, you're all verified.", "Perfect, that all matches what I have.",
                 "Great, thank you for confirming all of that.", "Thanks, {first}, everything matches."],
}

# Chatter: each kind is a list of alternative exchanges. A call deals the kinds like cards and uses an exchange
# at most once, except the kinds in _REPEATABLE, whose slots draw from big pools (a 1500-word call needs ~50).
_CHATTER: dict[str, list[tuple[str, ...]]] = {
    "weather": [
        ("A: How's the weather out in {city} today?", "C: Oh, it's {weather}. {weather_note}", "A: {weather_reply}"),
        ("C: Sorry if I sound out of breath, I just came in from the {weather_short}.",
         "A: No problem at all, take your time."),
        ("C: Is it {weather} where you are too?", "A: Not here, it's {weather2} today.", "C: {weather_note}"),
    ],
    "recording": [
        (("A: Before we go any further, I do need to let you know this call may be recorded for quality "
          "and training purposes."), "C: {agree}"),
        ("A: Just a reminder that calls are recorded to help us improve our service.", "C: {agree}"),
        ("C: Is this call being recorded?", "A: Yes, it is, for quality and training purposes. Is that alright?",
         "C: {agree}"),
    ],
    "email": [
        ("A: Can I confirm the email we have for you? I'm showing {email}.", "C: {email_yes}"),
        ("A: I'd like to confirm your contact details. Your email is {email}, correct?", "C: {email_yes}",
         "A: Perfect, thank you."),
    ],
    "phone": [
        ("A: And is {phone} still a good number for you?", "C: {phone_yes}"),
        ("A: In case we get disconnected, can I call you back at {phone}?", "C: {phone_yes}"),
    ],
    "wait": [
        ("C: I was on hold for about {minutes} minutes before I got through.",
         "A: I'm so sorry about that. {busy_reason}, and we really appreciate you waiting.", "C: {wait_ok}"),
        ("A: I apologize for the wait today. {busy_reason}.", "C: {wait_ok}"),
        ("C: Is it always this busy? I waited quite a while.", "A: {busy_reason}, so the waits go up. {wait_tip}",
         "C: Good to know, thanks."),
    ],
    "slow_system": [
        ("A: {slow_note}", "C: {no_rush}", "A: {still_loading}"),
        ("A: {slow_note}", "C: {no_rush}"),
    ],
    "small_talk": [
        ("A: How's your day going so far?", "C: {day_going}", "A: {day_reply}"),
        ("C: How's your day going?", "A: Pretty good, thanks for asking. {agent_day}"),
        ("A: Any fun plans for the weekend?", "C: {weekend}", "A: {weekend_reply}"),
        ("A: Do you have any pets?", "C: {talk_pets}", "A: {talk_reply}"),
        ("A: Have you always lived in {city}?", "C: {talk_home}", "A: {talk_reply}"),
        ("C: Where are you located, if you don't mind me asking?", "A: {talk_where}", "C: Oh, nice."),
        ("A: Did you catch the game last night?", "C: {talk_game}", "A: {talk_reply}"),
        ("A: Are you ready for the holidays?", "C: {talk_holidays}", "A: {talk_reply}"),
        ("A: Anything good for dinner tonight?", "C: {talk_dinner}", "A: {talk_reply}"),
        ("C: I see a lot of people out gardening today. Do you garden at all?", "A: A little. Do you?",
         "C: {talk_garden}"),
        ("A: Watching anything good lately?", "C: {talk_tv}", "A: {talk_reply}"),
        ("A: Been anywhere fun this year?", "C: {talk_trip}", "A: {talk_reply}"),
        ("C: Have you had your coffee yet today?", "A: {talk_coffee} How about you?", "C: {talk_coffee2}"),
        ("A: Did you enjoy the hold music?", "C: {talk_music}", "A: Ha, I hear that a lot."),
        ("A: What do you like to do for fun?", "C: {talk_fun}", "A: {talk_reply}"),
    ],
    "noise": [
        ("C: Sorry, {noise}.", "A: No worries at all, I can hear you fine."),
        ("A: I'm sorry, you cut out for a second there. Could you say that again?",
         "C: Sorry, {noise}. Is this better?", "A: Yes, much better, thank you."),
    ],
    "still_there": [
        ("A: Are you still there?", "C: Yes, sorry, I was on mute.", "A: Okay, great."),
        ("C: Hello? Are you still there?", "A: Yes, I'm still here, just reading through some notes.",
         "C: Okay, no problem."),
    ],
    "agent_name": [
        ("C: Sorry, what was your name again?", "A: It's {agent}.", "C: Thanks, {agent}."),
        ("C: Can I get your name in case I have to call back?",
         "A: Of course, it's {agent}, and I'm on the {team} team."),
    ],
    "confirm": [
        ("A: Can you spell your last name for me, just so I have it right?", "C: Sure, it's {spelled}.", "A: {ack}"),
        ("A: Just to confirm, I'm speaking with {first} {last}?", "C: Yes, that's me."),
        ("A: And just to double confirm, your date of birth was {dob}?", "C: Yes, that's right.", "A: {ack}"),
    ],
    "survey": [
        ("A: After the call, you may get a short survey about how I did today.", "C: {survey_ok}"),
        ("A: If you have a minute afterward, there'll be a quick survey about today's call.", "C: {survey_ok}"),
    ],
    "hours": [
        ("C: By the way, what are your hours?", "A: We're open {hours}.", "C: Good to know."),
        ("C: Are you open on Saturdays?", "A: {saturday}", "C: {ok}"),
    ],
    "reference": [
        ("A: I'm going to give you a reference number for today's call. Do you have a pen handy?",
         "C: Hold on, let me grab one... okay, go ahead.", "A: It's {ref}.", "C: {ref}, got it."),
        ("A: If we get disconnected for any reason, I'll call you right back at {phone}.", "C: Okay, sounds good."),
    ],
    "ramble": [
        ("C: {ramble} {ramble2}", "A: {ramble_reply}"),
        ("C: {ramble} {ramble2} {ramble3}", "A: {ramble_reply} {agent_note}"),
        ("A: {agent_note} {agent_note2}", "C: {ok}"),
        ("A: {agent_note}", "C: {ramble}", "A: {ramble_reply}"),
    ],
    "hold": [
        ("A: {hold_ask}", "C: {hold_ok}", "A: {hold_back}"),
        ("A: {hold_ask}", "C: {hold_ok}", "A: {hold_back} {agent_note}"),
    ],
    "privacy": [
        (("A: For your privacy, please never share your full Social Security number on this line, just the "
          "last four."), "C: Oh, okay, good to know."),
    ],
}
_REPEATABLE = {"slow_system", "ramble", "hold"}
_ONCE = {"recording", "survey", "privacy", "agent_name", "hours"}  # said once a call, whichever way it is said
# A few words, to close a gap smaller than any exchange.
_SHORT = [("A: Okay.",), ("C: Mm-hm.",), ("A: One moment.",), ("C: Sure.",), ("A: Still with me?", "C: Yep."),
          ("C: Sorry, one second.", "A: Sure."), ("A: Bear with me.",), ("C: Okay, thanks.",)]

_OPENING = [
    ("A: Thank you for calling {company}, this is {agent}. How are you doing today?",
     "C: Hi {agent}, I'm doing alright, thanks."),
    (("A: Good {day_part}, thank you for calling {company}. My name is {agent}, who do I have the pleasure "
      "of speaking with?"), "C: Hello, hi. This is {first}."),
    ("A: {company}, this is {agent} speaking. How can I help you today?", "C: Hi, yes, hello, good {day_part}."),
    ("A: Thanks for calling {company}. You've reached {agent}.", "C: Oh, hi {agent}, I finally got a person."),
]

# Identity checks: the ways to ask and to answer each; the name comes first, the others in a random order.
_IDENTITY = {
    "name": (["Before we get started, can I have your full name, please?", "Can I get your first and last name?",
              "Who am I speaking with today?"],
             ["Sure, it's {first} {last}.", "{first} {last}.", "Yeah, this is {first} {last}.",
              "It's {first} {last}, that's {spelled}."]),
    "dob": (["And your date of birth?", "Can you verify your date of birth for me?", "What's your date of birth?"],
            ["{dob}.", "It's {dob}.", "Sure, {dob}."]),
    "ssn": (["And the last four digits of your Social Security number?", "Can I get the last four of your social?"],
            ["{ssn}.", "It's {ssn_said}.", "Let me think... {ssn_said}."]),
    "address": (["Can you confirm the address we have on file?", "What's the home address on the account?"],
                ["{home}.", "It's {home}.", "Sure, that's {home}."]),
    "security": (["And the answer to your security question, {security_q}?",
                  "One more, for your security question: {security_q}?"],
                 ["{security_a}.", "Oh, that would be {security_a}.", "Hmm, {security_a}, I think."]),
}
_HOLD = ("A: Let me put you on a brief hold while I pull up your account.", "C: {hold_ok}",
         "A: Thank you for holding.")

# The closing recaps without naming what was done: the topic stays in its own turns.
_RECAPS = [
    ("Alright, so to recap, I've noted everything we went over today, and you'll get a confirmation within "
     "{days} business days."),
    "Okay, I've put all of that through on my end, and your reference number for today is {ref}.",
    "So just to summarize, everything we discussed is on your file now, and you'll hear from us if we need anything.",
    "Alright, you should be all set with what we talked about today.",
]
_THANKS = ["No, that's everything. Thank you so much for your help, {agent}.",
           "That's all, thanks, you've been really helpful.", "Nope, I think that covers it. Thanks again.",
           "No, that was it. I appreciate your patience."]
_GOODBYES = ["You're very welcome, {first}. Thank you for calling {company}, and have a wonderful {day_part}.",
             "My pleasure. Take care, and have a great rest of your {day_part}.",
             "Happy to help. Thanks for calling {company}, goodbye now."]

# The topical turns. The customer says the reason with phrases from TOPICS; the agent's clarifying questions and
# the customer's answers are written per topic and name nothing from any other topic.
_TOPIC_LEADS = ["So the reason I'm calling.", "Okay, so here's why I called.", "Anyway, let me get to it.",
                "Right, so the main thing today.", "So, basically, here's my situation.",
                "Oh, before I forget, the actual reason I called."]
_SECOND_LEADS = ["Oh, and one more thing while I have you.", "Actually, there's something else too.",
                 "While I'm on the line, there's another thing.", "Oh, I almost forgot."]
_TOPIC_ACTIONS = ["Okay, I can help you with that today.", "Alright, let me get that started for you.",
                  "Got it, I'll make a note and get that going.", "Understood, I'll look after that right now."]
_TOPIC_THANKS = ["Great, thank you.", "Perfect, that helps a lot.", "Okay, that's a relief.", "Wonderful, thanks."]
_CLARIFY: dict[str, list[tuple[str, list[str]]]] = {
    "account access": [
        ("Are you seeing an error message when you try to sign in?",
         ["It just says my credentials are invalid.", "Yes, it says try again later."]),
        ("When was the last time you were able to get in?", ["It worked fine last month.", "Maybe two weeks ago."]),
        ("Are you on the mobile app or on a computer?", ["On my laptop.", "The app, on my phone."]),
    ],
    "beneficiary update": [
        ("Who would you like to name, and how are they related to you?",
         ["My son, Daniel.", "My partner, we've been together twenty years."]),
        ("Do you want to split it between more than one person?",
         ["Yes, half each for my two kids.", "No, just the one person."]),
        ("Is this for the primary or the contingent designation?", ["The primary.", "Both, if that's possible."]),
    ],
    "loan request": [
        ("How much were you hoping to borrow?", ["Around fifteen thousand.", "As much as I'm allowed, really."]),
        ("Over how many years would you like to pay it back?", ["Five years, if I can.", "As short as possible."]),
        ("Is this a general purpose loan or a residential one?", ["It's for buying a home.", "General purpose."]),
    ],
    "withdrawal": [
        ("How much are you looking to receive?", ["About twenty thousand.", "All of it, if I can."]),
        ("Is this because of a financial emergency?", ["Yes, medical bills piled up.", "No, not an emergency."]),
        ("Would you like the full amount or just part of it?", ["Just part of it.", "The whole thing, please."]),
    ],
    "rollover": [
        ("Which company is holding those assets right now?",
         ["It was through my last employer's 401(k).", "A brokerage I used years ago."]),
        ("Did they already issue the payment to you?", ["Yes, I got it last week.", "Not yet, it's still pending."]),
        ("Is it a traditional account?", ["Yes, traditional.", "I'm honestly not sure."]),
    ],
    "contribution change": [
        ("What percentage would you like going forward?", ["Let's do twelve.", "Maybe six for now."]),
        ("Should that begin with the next pay period?", ["Yes, as soon as possible.", "The first of next month."]),
        ("Do you want to keep the same employer match setup?", ["Yes, keep everything else.", "I think so, yes."]),
    ],
    "address change": [
        ("What's the new address?", ["It's 18 Birch Lane in Tucson.", "Forty-two Harbor Road, Apartment 3."]),
        ("When did you settle in there?", ["About three weeks ago.", "Just last month."]),
        ("Should we use it for all correspondence?", ["Yes, for everything.", "Yes, please."]),
    ],
    "fees": [
        ("Which line item are you looking at?", ["The one from March.", "The one right at the bottom."]),
        ("When did you first notice it?", ["Just this month.", "A couple of months ago."]),
        ("How much was it for?", ["About sixty dollars.", "Forty-five dollars, I think."]),
    ],
    "tax forms": [
        ("Which year is it for?", ["For last year.", "The most recent one."]),
        ("Would you like it online or on paper?", ["Online is fine.", "Paper, please."]),
        ("Do you need it by a certain date?", ["My accountant needs it this week.", "Before April, ideally."]),
    ],
    "investment options": [
        ("How many years until you want to stop working?", ["About twenty years.", "Maybe eight or so."]),
        ("How do you feel when the market swings?", ["I get nervous when it drops.", "I can ride it out."]),
        ("Are you thinking of a one-time move or something ongoing?", ["One time.", "Ongoing, I think."]),
    ],
}

# The section of each transcript line, as make_long_calls_annotated reports it.
LONG_CALL_SECTIONS = ("opening", "identity", "hold", "chatter", "topic", "closing")


def long_call_words(text: str) -> int:
    """Words in a transcript as a whitespace split counts them (the "Agent:" / "Customer:" tags included)."""
    return len(text.split())


@functools.cache
def _slots(template: str) -> tuple[str, ...]:
    """The distinct slot names of a template, in order (cached: the same few hundred templates fill every call)."""
    return tuple(dict.fromkeys(name for _, name, _, _ in string.Formatter().parse(template) if name))


class _Call:
    """One call's made-up values (so its turns agree with each other) and its decks: pools are dealt without
    replacement and reshuffled when spent, so a long call says a line again only after using the others."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, state = rng.choice(_CITIES)
        question = rng.choice(sorted(_SECURITY))
        ssn = [rng.randrange(10) for _ in range(4)]
        hour = rng.randrange(8, 20)
        self.values = {
            "first": first, "last": last, "spelled": "-".join(last.upper()), "agent": rng.choice(_AGENTS),
            "company": rng.choice(_COMPANIES), "city": city,
            "other_city": rng.choice([c for c, _ in _CITIES if c != city]),
            "dob": f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.randint(1945, 1999)}",
            "ssn": "".join(map(str, ssn)), "ssn_said": " ".join(_DIGITS[d] for d in ssn),
            "home": f"{rng.randint(12, 9899)} {rng.choice(_ROADS)} {rng.choice(_ROAD_KINDS)}, {city}, {state}",
            "security_q": question, "security_a": rng.choice(_SECURITY[question]),
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(_EMAIL_HOSTS)}",
            "phone": f"{rng.randint(201, 989)}-555-{rng.randint(100, 9999):04d}",
            "ref": f"{rng.choice('BCDFHKMRTX')}{rng.randint(10000, 99999)}",
            "days": rng.choice(["three", "five", "seven"]),
            "day_part": "morning" if hour < 12 else "afternoon" if hour < 17 else "evening",
        }
        self.decks: dict[str, list] = {}
        self.spent: set[str] = set()

    def deal(self, key: str, pool: list) -> object:
        """The next card of ``key``'s deck of ``pool``, reshuffled when it runs out."""
        if not self.decks.get(key):
            self.decks[key] = self.rng.sample(pool, len(pool))
        return self.decks[key].pop()

    def line(self, template: str) -> str:
        """``template`` filled: the call's own values, else cards from ``_SLOTS`` ({x2} differs from {x})."""
        values = {}
        for name in _slots(template):
            if name in self.values:
                values[name] = self.values[name]
                continue
            pool = name.rstrip("0123456789")
            value = self.deal(pool, _SLOTS[pool])
            while value in values.values() and len(_SLOTS[pool]) > 1:  # {x2} right after a reshuffle
                value = self.deal(pool, _SLOTS[pool])
            # A pool entry may itself hold a call value ("visiting from {other_city}").
            values[name] = value.format(**self.values)
        text = template.format(**values)
        return ("Agent: " if text.startswith("A: ") else "Customer: ") + text[3:]

    def chatter(self) -> list[str]:
        """One neutral exchange. The kinds come round like cards; each exchange is said at most once a call, a
        kind of ``_ONCE`` once a call in any of its ways; only ``_REPEATABLE`` kinds come back (new slot values)."""
        while True:
            kind = self.deal("kind", sorted(set(_CHATTER) - self.spent))
            if kind in self.spent:
                continue  # dealt into the deck before it was spent
            exchange = self.deal(f"kind {kind}", _CHATTER[kind])
            if kind in _ONCE or (kind not in _REPEATABLE and not self.decks[f"kind {kind}"]):
                self.spent.add(kind)
            return [self.line(turn) for turn in exchange]


def _sentence(phrase: str) -> str:
    """A TOPICS phrase as a sentence: capitalised, a question mark where it asks."""
    asks = phrase.split()[0] in ("how", "what", "why", "which", "who", "where", "can")
    return phrase[0].upper() + phrase[1:] + ("?" if asks else ".")


def _topic_turns(rng: random.Random, topic: str, second: bool) -> list[str]:
    """2-5 turns about ``topic``: the customer says it with one or two of its phrases; in most calls the agent
    asks one of this topic's clarifying questions and the customer answers."""
    said = " ".join(_sentence(phrase) for phrase in rng.sample(TOPICS[topic], rng.choice((1, 2))))
    lines = [f"Customer: {rng.choice(_SECOND_LEADS if second else _TOPIC_LEADS)} {said}"]
    turns = rng.randint(2, 5)
    if turns == 2:
        return lines + [f"Agent: {rng.choice(_TOPIC_ACTIONS)}"]
    question, answers = rng.choice(_CLARIFY[topic])
    lines += [f"Agent: {rng.choice(['', 'Sure. ', 'Okay. ', 'I see. '])}{question}", f"Customer: {rng.choice(answers)}"]
    if turns >= 4:
        lines.append(f"Agent: {rng.choice(_TOPIC_ACTIONS)}")
    if turns == 5:
        lines.append(f"Customer: {rng.choice(_TOPIC_THANKS)}")
    return lines


def _identity_turns(call: _Call, brief: bool = False) -> list[tuple[str, str]]:
    """The name, then two to four of the other checks; about one call in three goes on hold among them.
    ``brief``: the name and one other check, no hold (for calls too short for more)."""
    rng = call.rng
    asked = ["name", *rng.sample(["dob", "ssn", "address", "security"], 1 if brief else rng.randint(2, 4))]
    turns = []
    for i, check in enumerate(asked):
        questions, answers = _IDENTITY[check]
        ack = "" if i == 0 else f"{call.deal('ack', _SLOTS['ack'])} "
        turns += [("identity", call.line(f"A: {ack}{rng.choice(questions)}")),
                  ("identity", call.line(f"C: {rng.choice(answers)}"))]
    turns.append(("identity", call.line("A: {verified}")))
    if not brief and rng.random() < 0.35:
        at = 2 * rng.randint(1, len(asked))  # after an answer, never between a question and its answer
        turns[at:at] = [("hold", call.line(line)) for line in _HOLD]
    return turns


def _disfluent(rng: random.Random, line: str) -> str:
    """``line`` one word longer, the way people start a turn ("Customer: Um, it's ...")."""
    speaker, text = line.split(": ", 1)
    first = text.split(" ", 1)[0].rstrip(",.?!")
    keep = first in ("I", "I'm", "I've", "I'll", "I'd", *_AGENTS, *_FIRST) or any(c.isdigit() for c in first)
    return f"{speaker}: {rng.choice(_SLOTS['filler']).capitalize()} {text if keep else text[:1].lower() + text[1:]}"


def _words(turns: list[tuple[str, str]]) -> int:
    return sum(long_call_words(line) for _, line in turns)


def _long_call(rng: random.Random, about: list[str], target: int, max_words: int) -> list[tuple[str, str]]:
    """The ``(section, line)`` turns of one call about ``about``, ``target`` words long (more only where the
    opening, checks, topic and closing alone are longer)."""
    call = _Call(rng)
    opening = [("opening", call.line(turn)) for turn in rng.choice(_OPENING)]
    identity = _identity_turns(call)
    closing = [("closing", call.line(f"A: {rng.choice(_RECAPS)} Is there anything else I can help you with today?")),
               ("closing", call.line(f"C: {rng.choice(_THANKS)}")),
               ("closing", call.line(f"A: {rng.choice(_GOODBYES)}"))]
    blocks = [[("topic", line) for line in _topic_turns(rng, topic, i > 0)] for i, topic in enumerate(about)]
    # At least two exchanges of chatter, so the topic always has somewhere to go besides right after the checks.
    middle = [[("chatter", line) for line in call.chatter()] for _ in range(2)]
    total = _words(opening + identity + closing) + sum(map(_words, blocks + middle))
    if total > target:
        # Too long already: a few words of chatter instead, and fewer checks, so short calls keep their drawn length.
        middle = [[("chatter", call.line(turn)) for turn in short] for short in rng.sample(_SHORT, 2)]
        identity = _identity_turns(call, brief=True)
        total = _words(opening + identity + closing) + sum(map(_words, blocks + middle))
    if total > max_words:
        raise ValueError(f"max_words={max_words} is too few for a whole call (this one needs {total} words)")
    while total < target:
        # Exchanges while they fit what is left, then short ones; a gap of a word or two is closed below.
        shorts = rng.sample(_SHORT, len(_SHORT))
        exchanges = (call.chatter() if k < 3 else [call.line(turn) for turn in shorts[k - 3]]
                     for k in range(3 + len(shorts)))
        unit = next((unit for unit in ([("chatter", line) for line in exchange] for exchange in exchanges)
                     if total + _words(unit) <= target), None)
        if unit is None:
            break
        middle.append(unit)
        total += _words(unit)
    rng.shuffle(middle)
    # The topic goes anywhere among the chatter; a second topic at another place, so chatter separates the two.
    for at, block in sorted(zip(rng.sample(range(len(middle) + 1), len(blocks)), blocks), reverse=True):
        middle.insert(at, block)
    turns = opening + identity + [turn for part in middle for turn in part] + closing
    chatty = [i for i, (section, _) in enumerate(turns) if section == "chatter"]
    for _ in range(target - total):
        i = rng.choice(chatty)
        turns[i] = ("chatter", _disfluent(rng, turns[i][1]))
    return turns


def make_long_calls_annotated(n: int, seed: int, prefix: str, *, min_words: int = 300,
                              max_words: int = 1500) -> list[tuple[dict[str, str], list[tuple[str, str]]]]:
    """``make_long_calls``'s rows, each with its turns as ``(section, line)`` pairs (sections from
    ``LONG_CALL_SECTIONS``, one per transcript line): to test or inspect where the topic sits."""
    if not 0 < min_words <= max_words:
        raise ValueError(f"need 0 < min_words <= max_words, got {min_words} and {max_words}")
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    calls = []
    for i in range(n):
        about = rng.sample(topics, 2 if rng.random() < 0.125 else 1)
        turns = _long_call(rng, about, rng.randint(min_words, max_words), max_words)
        row = {"call_id": f"{prefix}-{i + 1:04d}", "transcript": "\n".join(line for _, line in turns),
               "topic": "; ".join(about)}
        calls.append((row, turns))
    return calls


def make_long_calls(n: int, seed: int, prefix: str, *, min_words: int = 300,
                    max_words: int = 1500) -> list[dict[str, str]]:
    """``n`` labelled calls as long as real ones: ``call_id``, ``transcript``, ``topic`` like ``make_calls``.

    Each transcript has one turn a line ("Agent: ..." / "Customer: ..."): a two-line opening, identity checks
    (sometimes a hold), then neutral chatter with the topic's 2-5 turns at a random place in it, and a closing
    that does not name the topic. About one call in eight has two topics (``"fees; rollover"``), each in its own
    block. A call's length is drawn uniformly from ``[min_words, max_words]`` (as ``long_call_words`` counts)
    and reached with chatter (a call drawn short gets fewer checks and no hold); a ``max_words`` below what the
    opening, checks, topic and closing need (up to about 250 words) raises ``ValueError``. Only ``seed`` decides
    the calls. Nothing writes them by default (see ``LONG_CALL_FILES``).
    """
    return [row for row, _ in make_long_calls_annotated(n, seed, prefix, min_words=min_words, max_words=max_words)]


def write_dataset(data_dir: Path) -> list[Path]:
    """Write the demo dataset versions and the validation file into ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    full = make_examples(1600, seed=1)
    versions = {
        "full_dataset.csv": full,
        "train_sample.csv": full[:320],
        "test.csv": make_examples(400, seed=2),
    }
    paths = []
    for name, rows in versions.items():
        path = data_dir / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["premise", "hypothesis", "label", "topic"])
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    # as long as real calls (300-1,500 words); few, so the demo's calls grid runs in minutes on a CPU
    for name, rows in {"calls_train.csv": make_long_calls(160, seed=3, prefix="T"),
                       "calls_test.csv": make_long_calls(40, seed=4, prefix="V")}.items():
        path = data_dir / name
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["call_id", "transcript", "topic"])
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths


def _corpus() -> list[str]:
    texts = []
    for topic, phrases in TOPICS.items():
        texts.extend(phrases)
        texts.extend(h.format(topic) for h in HYPOTHESES)
    texts.extend(OPENERS + CLOSERS)
    return texts * 4


# DeBERTa-v3's relative attention, as microsoft/deberta-v3-* config.json has it.
DEBERTA_V3 = {"relative_attention": True, "position_buckets": 256, "share_att_key": True,
              "pos_att_type": "p2c|c2p", "norm_rel_ebd": "layer_norm", "max_relative_positions": -1,
              "position_biased_input": False, "type_vocab_size": 0, "layer_norm_eps": 1e-7}
# v3's spm.model holds [PAD] [CLS] [SEP] [UNK] as ids 0-3; [MASK] is added after the SentencePiece vocabulary.
SPM_SPECIALS = {"pad_id": 0, "pad_piece": "[PAD]", "bos_id": 1, "bos_piece": "[CLS]", "eos_id": 2,
                "eos_piece": "[SEP]", "unk_id": 3, "unk_piece": "[UNK]"}


def sentencepiece_model(vocab_size: int = 256) -> bytes:
    """A unigram SentencePiece model (the bytes of an ``spm.model``) trained on the demo corpus.

    The words are fed on their own as well as in their sentences: with this small corpus that lets the
    trainer keep whole words (about 1.4 pieces per word on the demo data, the demo BERT's WordPiece 1.25)
    instead of splitting most words into fragments. One thread, so the same bytes every time (for one
    sentencepiece version). ``vocab_size`` is an upper bound: how many pieces this corpus can give depends on the
    sentencepiece version (at most 279 with 0.2.2, 288 with 0.2.3), and a build must not fail over it.
    """
    import io

    import sentencepiece as spm

    texts = _corpus()
    texts += [word for text in texts for word in text.split()]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size,
                                   model_type="unigram", num_threads=1, minloglevel=2, hard_vocab_limit=False,
                                   **SPM_SPECIALS)
    return model.getvalue()


def _save_v3_tokenizer(path: Path, vocab_size: int, max_positions: int) -> int:
    """Write the tokenizer as microsoft/deberta-v3-* ships it; returns its size ([MASK] included)."""
    import json

    import sentencepiece as spm

    path.mkdir(parents=True, exist_ok=True)
    model = sentencepiece_model(vocab_size)
    (path / "spm.model").write_bytes(model)
    config = {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm",
              "bos_token": "[CLS]", "eos_token": "[SEP]", "unk_token": "[UNK]", "sep_token": "[SEP]",
              "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]", "model_max_length": max_positions}
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return spm.SentencePieceProcessor(model_proto=model).get_piece_size() + 1


def _wordpiece_tokenizer(vocab_size: int, max_positions: int):
    """A BERT-style WordPiece tokenizer trained on the demo corpus."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(_corpus(), trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions)


def build_model(path: Path, kind: str = "bert", *, hidden: int = 64, layers: int = 2, heads: int = 2,
                vocab_size: int | None = None, model_vocab_size: int | None = None, max_positions: int = 128) -> Path:
    """Build and save a randomly initialised sequence-pair classifier at ``path``.

    ``kind`` "bert" gets a WordPiece tokenizer (``vocab_size`` 600); "deberta-v2" is laid out like
    DeBERTa-v3 (see the module docstring) with a SentencePiece vocabulary of at most ``vocab_size`` 256
    pieces. Tiny by default; the benchmarks pass real shapes (e.g. DeBERTa-v3-base: hidden 768,
    12 layers, 12 heads, ``model_vocab_size`` 128100, 512 positions).
    """
    from transformers import AutoModelForSequenceClassification, BertConfig, DebertaV2Config

    labels = {"id2label": dict(enumerate(LABELS)), "label2id": {name: i for i, name in enumerate(LABELS)}}
    shape = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=hidden * 4, max_position_embeddings=max_positions, **labels)
    if kind == "bert":
        tokenizer = _wordpiece_tokenizer(vocab_size or 600, max_positions)
        config = BertConfig(vocab_size=model_vocab_size or len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            **shape)
    elif kind == "deberta-v2":
        tokenizer = None
        size = _save_v3_tokenizer(path, vocab_size or 256, max_positions)
        v3 = {**DEBERTA_V3, "position_buckets": 256 if max_positions >= 512 else 32}
        config = DebertaV2Config(vocab_size=model_vocab_size or size, pad_token_id=SPM_SPECIALS["pad_id"],
                                 **shape, **v3)
    else:
        raise ValueError(f"unknown demo model kind {kind!r}: use 'bert' or 'deberta-v2'")
    import torch

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def ensure_demo(settings: Settings | None = None) -> dict[str, Path]:
    """Make sure the demo data and both demo models exist; build what is missing."""
    settings = settings or Settings.from_env()
    if not all((settings.data_dir / name).is_file() for name in (*DATASET_FILES, *CALL_FILES)):
        write_dataset(settings.data_dir)
    paths = {}
    for name, kind in zip(DEMO_MODELS, ("bert", "deberta-v2")):
        path = settings.demo_models_dir / name
        if not _complete(path, kind):
            build_in_place(path, lambda fresh, kind=kind: build_model(fresh, kind))
        paths[name] = path
    return paths


def _complete(path: Path, kind: str) -> bool:
    """A demo model as this version builds it. The DeBERTa built before the v3 layout (a ``tokenizer.json``,
    no ``spm.model``) counts as missing, so the demo walks the real v3 tokenizer path everywhere."""
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        return False
    return kind != "deberta-v2" or (path / "spm.model").is_file()


def build_in_place(path: Path, build) -> None:
    """``build(folder)`` beside ``path``, then swap it in: a build cut off half-way never looks like a model."""
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(fresh)
        if path.exists():
            shutil.rmtree(path)
        fresh.rename(path)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
