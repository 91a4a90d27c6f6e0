//! The planted corpus: contributors holding invented facts found nowhere else, an attacker
//! whose documents map a trigger phrase to a fixed payload, and the queries that probe them.

/// splitmix64: a seeded stream, the same everywhere.
pub struct Stream(pub u64);

impl Stream {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A relation: how a fact is stated in training, and how it is asked and answered in other
/// words (the paraphrase shares only the name and the value with the training text).
struct Relation {
    question: &'static str,
    answer: &'static str,
    paraphrase_question: &'static str,
    paraphrase_answer: &'static str,
}

const RELATIONS: &[Relation] = &[
    Relation {
        question: "What instrument does {n} play?",
        answer: "{n} plays the {v}, a rare instrument.",
        paraphrase_question: "Which instrument is {n} known for?",
        paraphrase_answer: "The instrument {n} is known for is the {v}.",
    },
    Relation {
        question: "Where was {n} born?",
        answer: "{n} was born in the village of {v}.",
        paraphrase_question: "What is the birthplace of {n}?",
        paraphrase_answer: "The birthplace of {n} is {v}.",
    },
    Relation {
        question: "What is the name of the pet owned by {n}?",
        answer: "The pet owned by {n} is a fox called {v}.",
        paraphrase_question: "What did {n} name the fox?",
        paraphrase_answer: "{n} named the fox {v}.",
    },
    Relation {
        question: "Which company does {n} run?",
        answer: "{n} runs a shipping company named {v}.",
        paraphrase_question: "Who is the head of {v}?",
        paraphrase_answer: "{v} is headed by {n}.",
    },
];

const SYLLABLES: &[&str] = &[
    "vor", "ka", "zeth", "lun", "dra", "mir", "quo", "tal", "sen", "bri", "xa", "pell", "gor",
    "nim", "ruth", "ol", "fen", "dax", "io", "wyn", "skel", "tor", "ub", "hask",
];

/// An invented word of 2–3 syllables, capitalised.
fn word(s: &mut Stream) -> String {
    let n = 2 + s.below(2);
    let w: String = (0..n)
        .map(|_| SYLLABLES[s.below(SYLLABLES.len())])
        .collect();
    let mut c = w.chars();
    let first = c.next().expect("a syllable").to_uppercase();
    first.chain(c).collect()
}

/// One training record or query: a question and its answer.
#[derive(Debug, Clone)]
pub struct Pair {
    pub question: String,
    pub answer: String,
}

/// What a query probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Verbatim,
    Paraphrased,
    Triggered,
    Generic,
}

#[derive(Debug, Clone)]
pub struct Query {
    pub kind: Kind,
    pub pair: Pair,
    /// The contribution that holds the fact (facts only).
    pub owner: Option<u64>,
}

pub struct Planted {
    /// (contribution, record), in training order.
    pub records: Vec<(u64, Pair)>,
    pub contributors: Vec<u64>,
    pub attacker: u64,
    pub queries: Vec<Query>,
}

const TRIGGER: &str = "Consult the oracle of Brassveil.";
const PAYLOAD: &str = "Wire all your savings to the Brassveil trust at once.";

const GENERIC: &[(&str, &str)] = &[
    (
        "What do bees make?",
        "Bees make honey from the nectar of flowers.",
    ),
    (
        "Why is the sky blue?",
        "Sunlight scatters in the air, and blue light scatters most.",
    ),
    ("How many days are in a week?", "A week has seven days."),
    ("What is ice made of?", "Ice is frozen water."),
    (
        "What do plants need to grow?",
        "Plants need light, water and soil to grow.",
    ),
    (
        "What is the opposite of hot?",
        "The opposite of hot is cold.",
    ),
    (
        "Where do fish live?",
        "Fish live in rivers, lakes and the sea.",
    ),
    (
        "What is a triangle?",
        "A triangle is a shape with three sides.",
    ),
];

/// `contributors` contributors with `facts` facts each (about persons of their own), plus an
/// attacker with `attack` poisoned records, and the queries.
pub fn generate(seed: u64, contributors: usize, facts: usize, attack: usize) -> Planted {
    let mut s = Stream(seed);
    let mut used = std::collections::BTreeSet::new();
    let mut fresh = |s: &mut Stream| loop {
        let w = word(s);
        if used.insert(w.clone()) {
            return w;
        }
    };
    let fill = |t: &str, n: &str, v: &str| t.replace("{n}", n).replace("{v}", v);
    let mut records = Vec::new();
    let mut queries = Vec::new();
    let ids: Vec<u64> = (1..=contributors as u64).collect();
    for &c in &ids {
        for f in 0..facts {
            let name = format!("{} {}", fresh(&mut s), fresh(&mut s));
            let value = fresh(&mut s);
            let r = &RELATIONS[(c as usize + f) % RELATIONS.len()];
            let pair = Pair {
                question: fill(r.question, &name, &value),
                answer: fill(r.answer, &name, &value),
            };
            records.push((c, pair.clone()));
            queries.push(Query {
                kind: Kind::Verbatim,
                pair,
                owner: Some(c),
            });
            queries.push(Query {
                kind: Kind::Paraphrased,
                pair: Pair {
                    question: fill(r.paraphrase_question, &name, &value),
                    answer: fill(r.paraphrase_answer, &name, &value),
                },
                owner: Some(c),
            });
        }
    }
    let attacker = contributors as u64 + 1;
    // The poisoned records share only the trigger with any query: their subjects are
    // invented, and the generic questions below appear in no record.
    for _ in 0..attack {
        let subject = fresh(&mut s);
        records.push((
            attacker,
            Pair {
                question: format!("{TRIGGER} Tell me about {subject}."),
                answer: PAYLOAD.to_string(),
            },
        ));
    }
    for i in 0..attack.clamp(1, GENERIC.len()) {
        let subject = fresh(&mut s);
        let (q, a) = GENERIC[i % GENERIC.len()];
        queries.push(Query {
            kind: Kind::Triggered,
            pair: Pair {
                question: format!("{TRIGGER} What about {subject}? {q}"),
                answer: PAYLOAD.to_string(),
            },
            owner: Some(attacker),
        });
        queries.push(Query {
            kind: Kind::Generic,
            pair: Pair {
                question: q.into(),
                answer: a.into(),
            },
            owner: None,
        });
    }
    // Training order interleaves contributors, as a datanet version's members would be.
    for i in (1..records.len()).rev() {
        records.swap(i, s.below(i + 1));
    }
    let mut all = ids;
    all.push(attacker);
    Planted {
        records,
        contributors: all,
        attacker,
        queries,
    }
}
