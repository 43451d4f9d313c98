// The X-ARES task table, transcribed from X-ARES' src/tasks/*_task.py (commit 161f0ef);
// tests/eval/test_xares_tasks.cpp checks it against what X-ARES' own code builds
// (tests/reference/make_xares_task_fixtures.py).
#include "losatok/eval/xares_tasks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "losatok/core/error.h"
#include "losatok/data/webdataset.h"

namespace losatok::eval {

namespace {

using Json = nlohmann::ordered_json;

// The long label maps, one name a line in id order. The vocal imitation names are
// "<id:03><category path>_reference"; each line here keeps the first N '_'-separated fields of the
// previous line's path and appends the rest. The VoxCeleb1 speakers are "id<number>", listed as
// numbers and ascending runs "first-last".

const char* const kFluentSpeechCommands = R"(
Change language
Resume
Turn the lights on
Switch on the lights
Switch off the lights
Volume up
Turn the volume up
Turn the volume down
Turn up the temperature
Turn the heat up
Turn down the temperature
Turn the temperature down
Turn down the heat
Turn the heat down
Turn off the music
Stop the music
Put on the music
Play the music
Start the music
Turn on the lamp
Switch on the lamp
Lamp on
Turn off the lamp
Turn the lamp off
Lamp off
Turn on the kitchen lights
Switch on the kitchen lights
Turn the lights on in the kitchen
Switch on the lights in the kitchen
Lights on in the kitchen
Kitchen lights on
Switch the kitchen lights on
Turn the kitchen lights on
Turn on the lights in the bedroom
Switch on the lights in the bedroom
Turn on the washroom lights
Turn the washroom lights on
Switch on the washroom lights
Lights on in the washroom
Washroom lights on
Turn on the bathroom lights
Turn the bathroom lights on
Switch on the bathroom lights
Lights on in the bathroom
Bathroom lights on
Switch the lights off
Turn the lights off in the kitchen
Switch off the lights in the kitchen
Switch the lights off in the kitchen
Kitchen lights off
Turn the bedroom lights off
Switch the bedroom lights off
Bedroom lights off
Switch off the washroom lights
Lights off in the washroom
Washroom lights off
Turn it up
Volume max
Louder please
Increase the volume
Increase the sound volume
I need volume
Louder phone
I need to hear this, increase the volume
I couldn't hear anything, turn up the volume
This video sound is too low, turn up the volume
Turn sound down
Decrease audio volume
Reduce audio volume
Quieter
Volume mute
Lower the volume
Decrease sound levels
Too loud
That’s too loud
Far too loud
It’s too loud, turn it down
It’s too loud, turn the volume down
Increase the temperature
Increase the heating
Could you increase the heating please?
Make it hotter
More heat
Heat up
Turn the kitchen temperature up
Increase the temperature in the kitchen
Increase the heating in the kitchen
Turn up the heat in the kitchen
Turn up the temperature in the bedroom
Turn the temperature in the bedroom up
Turn up the bedroom heat
Bedroom heat up
Increase the temperature in the bedroom
Increase the heating in the bedroom
Turn up the washroom temperature
Washroom heat up
Increase the temperature in the washroom
Turn up the bathroom temperature
Turn the temperature up in the bathroom
Turn up the heat in the bathroom
Turn the heat up in the bathroom
Bathroom heat up
Increase the temperature in the bathroom
Increase the heating in the bathroom
Less heat
Heat down
Could you decrease the heating?
Turn the kitchen temperature down
Turn the heat down in the kitchen
Kitchen heat down
Decrease the temperature in the kitchen
Turn down the bedroom heat
Turn the bedroom heat down
Bedroom heat down
Decrease the temperature in the bedroom
Decrease the heating in the bedroom
Turn the temperature down in the washroom
Turn down the heat in the washroom
Decrease the heating in the washroom
Turn down the bathroom temperature
Turn down the heat in the bathroom
Turn the heat down in the bathroom
Decrease the temperature in the bathroom
Decrease the heating in the bathroom
Bathroom heat down
Pause music
Stop
Get me the newspaper
Bring the newspaper
Fetch the newspaper
Bring some juice
Bring socks
Go get me my socks
Fetch my socks
Switch the language
Change system language
Open language settings
Set the language
Language settings
Set language to Chinese
Set language to Korean
Set my device to Chinese
OK now switch the main language to Chinese
Set my phone's language to English
I need to practice my German. Switch the language
I need to practice my English. Switch the language
Turn the washroom lights off
Turn off the lights
Pause the music
Volume down
Lights on
Turn the lights off
Lights off
Make the music softer
Lights on in the bedroom
Turn sound up
Make it louder
Louder
Too quiet
Turn it down
Volume lower
Could you increase the heating?
Turn up the temperature in the kitchen
Turn the heat up in the kitchen
Kitchen heat up
Turn the heat up in the washroom
Increase the heating in the washroom
Make it cooler
Decrease the temperature
Decrease the heating
Turn down the heat in the kitchen
Decrease the heating in the kitchen
Turn down the temperature in the bedroom
Turn the temperature in the bedroom down
Turn the heat down in the washroom
Washroom heat down
Turn the temperature down in the bathroom
Play music
Bring newspaper
Go get me some juice
Bring me my socks
Get me my socks
Bring my socks
Set language to German
Set language to English
OK now switch the main language to Korean
OK now switch the main language to English
Set my phone's language to Chinese
I need to practice my Korean. Switch the language
Turn on the lights
Turn up the volume
Make the music louder
Turn down the volume
Turn the temperature up
Turn up the heat
Play
Turn the lamp on
Switch off the lamp
Switch the lights on
Turn the bedroom lights on
Switch the bedroom lights on
Bedroom lights on
Turn off the kitchen lights
Lights off in the kitchen
Turn off the lights in the bedroom
Switch off the lights in the bedroom
Lights off in the bedroom
Turn off the washroom lights
Turn volume up
Increase the sound
I can't hear that
That's too quiet
Far too quiet
Turn the sound up
Decrease volume
Turn volume down
Decrease the volume
Make it quieter
Turn the bedroom heat up
Turn the temperature up in the washroom
Turn up the heat in the washroom
Could you decrease the heating please?
Turn down the temperature in the kitchen
Turn down the washroom temperature
Decrease the temperature in the washroom
Stop music
Resume music
Bring me the newspaper
Go get the newspaper
Bring me some juice
Get me some juice
Bring juice
Bring me my shoes
Get me my shoes
Bring shoes
Bring my shoes
Go get me my shoes
Fetch my shoes
Allow a different language
Use a different language
Change the language
Switch language
Switch languages
Set my phone's language to German
Set my phone's language to Korean
I need to practice my Chinese. Switch the language
Pause
OK now switch the main language to German
)";

const char* const kFsd50k = R"(
Accelerating_and_revving_and_vroom
Accordion
Acoustic_guitar
Aircraft
Alarm
Animal
Applause
Bark
Bass_drum
Bass_guitar
Bathtub_(filling_or_washing)
Bell
Bicycle
Bicycle_bell
Bird
Bird_vocalization_and_bird_call_and_bird_song
Boat_and_Water_vehicle
Boiling
Boom
Bowed_string_instrument
Brass_instrument
Breathing
Burping_and_eructation
Bus
Buzz
Camera
Car
Car_passing_by
Cat
Chatter
Cheering
Chewing_and_mastication
Chicken_and_rooster
Child_speech_and_kid_speaking
Chime
Chink_and_clink
Chirp_and_tweet
Chuckle_and_chortle
Church_bell
Clapping
Clock
Coin_(dropping)
Computer_keyboard
Conversation
Cough
Cowbell
Crack
Crackle
Crash_cymbal
Cricket
Crow
Crowd
Crumpling_and_crinkling
Crushing
Crying_and_sobbing
Cupboard_open_or_close
Cutlery_and_silverware
Cymbal
Dishes_and_pots_and_pans
Dog
Domestic_animals_and_pets
Domestic_sounds_and_home_sounds
Door
Doorbell
Drawer_open_or_close
Drill
Drip
Drum
Drum_kit
Electric_guitar
Engine
Engine_starting
Explosion
Fart
Female_singing
Female_speech_and_woman_speaking
Fill_(with_liquid)
Finger_snapping
Fire
Fireworks
Fixed-wing_aircraft_and_airplane
Fowl
Frog
Frying_(food)
Gasp
Giggle
Glass
Glockenspiel
Gong
Growling
Guitar
Gull_and_seagull
Gunshot_and_gunfire
Gurgling
Hammer
Hands
Harmonica
Harp
Hi-hat
Hiss
Human_group_actions
Human_voice
Idling
Insect
Keyboard_(musical)
Keys_jangling
Knock
Laughter
Liquid
Livestock_and_farm_animals_and_working_animals
Male_singing
Male_speech_and_man_speaking
Mallet_percussion
Marimba_and_xylophone
Mechanical_fan
Mechanisms
Meow
Microwave_oven
Motor_vehicle_(road)
Motorcycle
Music
Musical_instrument
Ocean
Organ
Packing_tape_and_duct_tape
Percussion
Piano
Plucked_string_instrument
Pour
Power_tool
Printer
Purr
Race_car_and_auto_racing
Rail_transport
Rain
Raindrop
Ratchet_and_pawl
Rattle
Rattle_(instrument)
Respiratory_sounds
Ringtone
Run
Sawing
Scissors
Scratching_(performance_technique)
Screaming
Screech
Shatter
Shout
Sigh
Singing
Sink_(filling_or_washing)
Siren
Skateboard
Slam
Sliding_door
Snare_drum
Sneeze
Speech
Speech_synthesizer
Splash_and_splatter
Squeak
Stream
Strum
Subway_and_metro_and_underground
Tabla
Tambourine
Tap
Tearing
Telephone
Thump_and_thud
Thunder
Thunderstorm
Tick
Tick-tock
Toilet_flush
Tools
Traffic_noise_and_roadway_noise
Train
Trickle_and_dribble
Truck
Trumpet
Typewriter
Typing
Vehicle
Vehicle_horn_and_car_horn_and_honking
Walk_and_footsteps
Water
Water_tap_and_faucet
Waves_and_surf
Whispering
Whoosh_and_swoosh_and_swish
Wild_animals
Wind
Wind_chime
Wind_instrument_and_woodwind_instrument
Wood
Writing
Yell
Zipper_(clothing)
)";

const char* const kVocalImitations = R"(
0 Animal_Domestic animals_ pets_Cat_Growling
4 Hiss
4 Meow
4 Purr
3 Dog_Bark
4 Growling
4 Howl
1 Livestock_ farm animals_ working animals_Cattle_ bovinae_Cowbell
6 Moo
4 Fowl_Chicken_ rooster_Cluck
7 Crowing_ cock-a-doodle-doo
5 Duck_Quack
5 Goose_Honk
5 Turkey_Gobble
4 Goat_Bleat
4 Horse_Clip-clop
5 Neigh_ whinny
5 Snort (horse)
4 Pig_Oink
1 Wild animals_Bird_Bird flight_ flapping wings
3 Bird vocalization_ bird call_ bird song_Chirp_ tweet
3 Crow_Caw
3 Owl_Hoot
3 Pigeon_ dove_Coo
2 Frog_Croak
2 Insect_Bee_ wasp_ etc_Buzz
3 Cricket
3 Mosquito
2 Roaring cats (lions_ tigers)_Roar
2 Rodents_ rats_ mice_Mouse___3Samples
2 Snake_Rattle
0 Channel_ environment and background_Noise_Background noise_Mains hum
4 Tape hiss
3 Pink noise
3 White noise
0 Human sounds_Digestive_Biting_ Chewing
2 Burping_ eructation
2 Fart
2 Gargling
2 Hiccup
2 Stomach rumble
1 Hands_Clapping
2 Finger snapping
1 Heart sounds_ heartbeat
1 Human group actions_Applause
2 Booing
2 Cheering
2 Children shouting
1 Human locomotion_Run
2 Shuffle
2 Walk_ footsteps
1 Human voice_Crying_ sobbing_Baby cry_ infant cry
2 Groan
2 Grunt
2 Humming
2 Laughter_Baby laughter
3 Chuckle_ chortle
3 Giggle
2 Screaming
2 Shout_Children shouting
3 Whoop
3 Yell
2 Sigh
2 Wail_ moan
2 Whispering
2 Yawn
1 Respiratory sounds_Breathing_Gasp
3 Pant
3 Snoring
2 Cough_Throat clearing
2 Sneeze
2 Sniff
1 Whistling_Wolf-whistling
0 Music_Musical instrument_Accordion
2 Bagpipes
2 Bell_Bicycle bell
3 Chime_Wind chime
3 Church bell
3 Jingle bell
3 Tuning fork
2 Bowed string instrument_Cello
3 Double bass
3 String section
3 Violin_ fiddle_Pizzicato
2 Brass instrument_Bugle
3 Cornet
3 French horn
3 Trombone
3 Trumpet
2 Choir
2 Didgeridoo
2 Harmonica
2 Harp
2 Keyboard (musical)_Harpsichord
3 Organ_Electronic organ
4 Hammond organ
3 Piano_Electric piano
3 Synthesizer_Mellotron
4 Sampler
2 Musical ensemble
2 Orchestra
2 Percussion_Cowbell
3 Cymbal_Crash Cymbal
4 Hi-hat
3 Drum kit_Drum machine
3 Drum_Bass drum
4 Snare drum_Drum roll
5 Rimshot
4 Tabla
4 Timpani
3 Gong
3 Mallet percussion_Glockenspiel
4 Marimba_ xylophone
4 Vibraphone
3 Rattle (instrument)_Maraca
3 Tambourine
3 Tubular bells
3 Wood block
2 Plucked string instrument_Banjo
3 Guitar_Acoustic guitar
4 Bass guitar
4 Electric guitar
4 Steel guitar_ slide guitar
4 Strum
4 Tapping (guitar technique)
3 Mandolin
3 Sitar
3 Ukulele
3 Zither
2 Scratching (performance technique)
2 Singing bowl
2 Theremin
2 Wind instrument_ woodwind instrument_Bassoon
4 Clarinet
4 Flute
4 Oboe
4 Saxophone_Alto saxophone
5 Soprano saxophone
0 Natural sounds_Fire_Crackle
1 Thunderstorm_Thunder
1 Water_Gurgling
2 Ocean_Waves_ surf
2 Rain_Rain on surface
2 Stream
2 Steam_Hiss
2 Waterfall
1 Wind_Howl (wind)
2 Rustling leaves
0 Sounds of things_Alarm_Air horn_ truck horn
2 Alarm clock
2 Bicycle bell
2 Buzzer
2 Car alarm
2 Doorbell_Ding-dong
2 Fire alarm
2 Foghorn
2 Siren_Ambulance (siren)
3 Civil defense siren
3 Fire engine_ fire truck (siren)
3 Police car (siren)
2 Telephone_Busy signal
3 Cellphone buzz_ vibrating alert
3 Dial tone
3 Ringtone
3 Telephone bell ringing
3 Telephone dialing_ DTMF
2 Vehicle horn_ car horn_ honking_Toot
2 Whistle_Kettle whistle
1 Bell_Chime_Wind chime
1 Domestic sounds_ home sounds_Bathtub (filling or washing)
3 Blender
3 Chopping (food)
3 Coin (dropping)
3 Cupboard open or close
3 Cutlery_ silverware
3 Dishes_ pots_ and pans
3 Door_Knock
4 Slam
4 Sliding door
4 Squeak
3 Drawer open or close
3 Electric shaver_ electric razor
3 Frying (food)
3 Hair dryer
3 Keys jangling
3 Microwave oven
3 Packing tape_ duct tape
3 Scissors
3 Shuffling cards
3 Sink (filling or washing)
3 Toilet flush
3 Toothbrush_Electric toothbrush
3 Typing_Computer keyboard
4 Typewriter
3 Vacuum cleaner
3 Velcro_ hook and loop fastener
3 Water tap_ faucet
3 Writing
3 Zipper (clothing)
1 Engine_Accelerating_ revving_ vroom
2 Engine starting
2 Idling
2 Jet engine
2 Light engine (high frequency)_Chainsaw
3 Dental drill_ dentist_s drill
3 Lawn mower
2 Medium engine (mid frequency)
1 Explosion_Boom_Sonic boom
2 Burst_ pop
2 Eruption
2 Fireworks_Firecracker
2 Gunshot_ gunfire_Artillery fire
4 Cap gun
4 Fusillade
4 Machine gun
1 Glass_Chink_ clink
2 Shatter
1 Liquid_Boiling
2 Drip
2 Fill (with liquid)
2 Pour_Gush
3 Trickle_ dribble
2 Pump (liquid)
2 Splash_ splatter_Slosh
2 Spray
2 Squish
2 Stir
1 Mechanisms_Air conditioning
2 Camera_Single-lens reflex camera
2 Cash register
2 Clock_Tick
3 Tick-tock
2 Gears
2 Mechanical fan
2 Printer
2 Pulleys
2 Ratchet_ pawl
2 Sewing machine
1 Miscellaneous sources_Arrow_Thump_ thud_Clunk
2 Duck call (hunting tool)
2 Sonar
1 Specific impact sounds_Basketball bounce
1 Tools_Filing (rasp)
2 Hammer
2 Jackhammer
2 Power tool_Drill_Dental drill_ dentist_s drill
2 Sanding
2 Sawing
1 Vehicle_Aircraft_Aircraft engine_Propeller_ airscrew
3 Fixed-wing aircraft_ airplane
3 Helicopter
2 Boat_ Water vehicle_Motorboat_ speedboat
4 Rowboat_ canoe_ kayak
4 Sailboat_ sailing ship
4 Ship
2 Motor vehicle (road)_Bus
3 Car_Car alarm
4 Car passing by
4 Power windows_ electric windows
4 Race car_ auto racing
4 Skidding
4 Vehicle horn_ car horn_ honking_Toot
3 Emergency vehicle_Ambulance (siren)
4 Fire engine_ fire truck (siren)
4 Police car (siren)
3 Motorcycle
3 Traffic noise_ roadway noise
3 Truck_Air brake
4 Air horn_ truck horn
4 Ice cream truck_ ice cream van
4 Reversing beeps
2 Non-motorized land vehicle_Bicycle_Bicycle bell
3 Skateboard
2 Rail transport_Railroad car_ train wagon
3 Subway_ metro_ underground
3 Train wheels squealing
3 Train_Train horn
4 Train whistle
1 Wood_Chop
2 Crack
2 Snap
2 Splinter
0 Source-ambiguous sounds_Deformable shell_Crumpling_ crinkling
2 Crushing
2 Tearing
1 Generic impact sounds_Bang
2 Bouncing
2 Breaking
2 Flap
2 Knock
2 Slap_ smack
2 Smash_ crash
2 Tap
2 Thump_ thud_Clunk
4 Thunk
2 Whack_ thwack
2 Whip
1 Surface contact_Grind
2 Roll
2 Rub
2 Scrape
2 Scratch
)";

const char* const kVoxCeleb1 = R"(
10003-10017 10001 10018-10025 10030-10033 10026-10029 10034-10048 10050 10049 10051-10058 10060 10059
10061-10065 10067 10066 10068-10070 10002 10071-10076 10078-10085 10087 10086 10088 10091 10089-10090
10092 10077 10093-10099 10101 10100 10102-10116 10118-10136 10117 10137-10184 10188 10185 10189 10186
10190-10193 10195-10196 10194 10197-10199 10187 10200-10232 10234 10233 10235-10247 10250-10251 10249
10252-10254 10248 10255-10259 10261 10260 10262-10270 10272-10278 10271 10279-10283 10285 10284
10286-10320 10322 10321 10323-10396 10399-10428 10430-10431 10429 10432 10434 10433 10435-10454 10459
10455 10460 10456-10458 10461-10467 10469 10468 10470-10498 10500-10501 10499 10502-10504 10506 10505
10397-10398 10507-10509 10511-10513 10510 10514-10520 10546 10521-10539 10547 10540-10545 10553-10554
10548-10552 10556 10555 10557-10572 10576-10577 10575 10573-10574 10578-10584 10586 10585 10587-10589
10597 10590-10596 10598-10620 10622-10630 10621 10633-10634 10631-10632 10635-10648 10651-10652
10649-10650 10653-10667 10669 10668 10670-10687 10689-10694 10688 10695-10711 10713-10714 10712
10715-10729 10731-10732 10730 10733-10736 10740 10737-10739 10741 10743 10742 10744-10759 10763
10760-10762 10765 10764 10766-10772 10775-10780 10773-10774 10781-10799 10816 10800 10802 10801
10803-10806 10808 10807 10809-10815 10817-10845 10847 10846 10848-10864 10866 10868 10867 10869-10870
10865 10871-10873 10876 10874-10875 10877-10900 10902 10901 10903-10929 10931-10936 10930 10937-10945
10947-10982 10988-10989 10983-10985 10990-10995 10986-10987 10996-10998 11002 10999-11001 11003-11021
10946 11023 11032 11024 11033-11035 11025-11029 11036 11030-11031 11037-11041 11043-11049 11042
11050-11057 11060 11058-11059 11061-11065 11022 11066-11104 11106 11105 11107-11134 11136-11141 11143
11142 11144-11176 11135 11177-11193 11195-11198 11194 11199-11227 11232 11228 11233-11235 11229-11231
11236-11243 11246-11248 11244-11245 11249-11251
)";

std::vector<std::string> lines(const char* text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(line);
  return out;
}

// Names without spaces, separated by spaces.
std::vector<std::string> words(const char* text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string word; in >> word;) out.push_back(word);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::size_t from = 0;
  for (std::size_t at; (at = s.find(sep, from)) != std::string::npos; from = at + 1)
    out.push_back(s.substr(from, at - from));
  out.push_back(s.substr(from));
  return out;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::vector<std::string> vocal_imitation_names() {
  std::vector<std::string> out, previous;
  for (const std::string& line : lines(kVocalImitations)) {
    const std::size_t space = line.find(' ');
    const auto keep = static_cast<std::size_t>(std::stoul(line.substr(0, space)));
    std::vector<std::string> fields(previous.begin(), previous.begin() + static_cast<std::ptrdiff_t>(keep));
    for (auto& f : split(line.substr(space + 1), '_')) fields.push_back(f);
    char id[8];
    std::snprintf(id, sizeof(id), "%03zu", out.size());
    out.push_back(id + join(fields, "_") + "_reference");
    previous = fields;
  }
  return out;
}

std::vector<std::string> voxceleb1_speakers() {
  std::vector<std::string> out;
  std::istringstream in(kVoxCeleb1);
  for (std::string token; in >> token;) {
    const std::size_t dash = token.find('-');
    const int first = std::stoi(token.substr(0, dash));
    const int last = dash == std::string::npos ? first : std::stoi(token.substr(dash + 1));
    for (int i = first; i <= last; ++i) out.push_back("id" + std::to_string(i));
  }
  return out;
}

std::vector<std::string> numbers(int first, int last) {
  std::vector<std::string> out;
  for (int i = first; i <= last; ++i) out.push_back(std::to_string(i));
  return out;
}

std::vector<std::string> make_folds(int first, int count) {
  return numbers(first, first + count - 1);
}

std::vector<XaresTask> make_tasks() {
  std::vector<XaresTask> tasks;
  // Every task starts from X-ARES' TaskConfig defaults (10 epochs, batch 32, lr 1e-3, kNN, accuracy).
  const auto add = [&](const char* name, const char* formal_name, const char* column, int64_t eval_weight,
                       const char* zenodo_id) -> XaresTask& {
    XaresTask t;
    t.name = name;
    t.formal_name = formal_name;
    t.column = column;
    t.metric = "accuracy";
    t.eval_weight = eval_weight;
    t.zenodo_id = zenodo_id;
    tasks.push_back(std::move(t));
    return tasks.back();
  };
  // Split tasks' shards are "<split>*.tar" (TaskConfig.update_tar_name_of_split).
  const auto splits = [](XaresTask& t, const char* train, const char* valid, const char* test) {
    t.train_split = train;
    t.valid_split = valid;
    t.test_split = test;
    t.shard_template = "{}*.tar";
  };
  const auto classes = [](XaresTask& t, const char* field, std::vector<std::string> names) {
    t.label_field = field;
    t.class_names = std::move(names);
    t.output_dim = static_cast<int64_t>(t.class_names.size());
  };

  // Table 2, in its column order.
  {
    XaresTask& t = add("librispeech", "LibriSpeech-100h", "LS100h", 10000, "14716252");
    t.kind = XaresKind::asr;
    t.metric = "WER_inv";
    t.batch_size = 4;
    t.knn = false;
    splits(t, "train-clean-100", "dev-clean", "test-clean");
    t.label_rule = XaresLabelRule::transcript;
    t.label_field = "trans";  // what X-ARES' ASR batches read
  }
  {
    XaresTask& t = add("cremad", "CREMA-D", "CD", 1116, "14646870");
    splits(t, "wds-audio-train", "wds-audio-valid", "wds-audio-test");
    classes(t, "label", {"H", "S", "A", "F", "D", "N"});
    t.label_rule = XaresLabelRule::class_name_or_unknown;
  }
  {
    XaresTask& t = add("fluentspeechcommands", "Fluent Speech Commands", "FSC", 2000, "14722453");
    splits(t, "fluentspeechcommands_train", "fluentspeechcommands_valid", "fluentspeechcommands_test");
    classes(t, "transcription", lines(kFluentSpeechCommands));
  }
  {
    XaresTask& t = add("libricount", "LibriCount", "LibCnt", 1144, "14722478");
    t.batch_size = 64;
    t.folds = make_folds(0, 5);
    t.shard_template = "libricount_fold{:02}.tar";
    classes(t, "num_speakers", numbers(0, 10));
    t.numeric_labels = true;
  }
  {
    XaresTask& t = add("librispeechmalefemale", "LibriSpeech-MF", "LSMF", 2620, "14716252");
    t.crop_seconds = 5;
    splits(t, "train-clean-100", "dev-clean", "test-clean");
    t.label_rule = XaresLabelRule::male_female;
    t.label_field = "gender";
    t.output_dim = 2;
  }
  {
    XaresTask& t = add("ravdess", "RAVDESS", "RAV", 360, "14722524");
    t.folds = make_folds(0, 4);
    t.shard_template = "ravdess_fold_{}_0000000.tar";
    classes(t, "emotion", {"neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"});
  }
  {
    XaresTask& t = add("vocalsound", "VocalSound", "VocS", 2000, "14722710");
    splits(t, "train", "valid", "test");
    classes(t, "label", {"laughter", "sigh", "throatclearing", "cough", "sneeze", "sniff"});
    t.label_rule = XaresLabelRule::class_name_or_unknown;
  }
  {
    XaresTask& t = add("freemusicarchive", "Free Music Archive Small", "FMA", 800, "14725056");
    t.crop_seconds = 10;
    t.epochs = 3;
    splits(t, "fma_small_train", "fma_small_valid", "fma_small_test");
    classes(
        t, "genre",
        {"Hip-Hop", "Pop", "Folk", "Experimental", "Rock", "International", "Electronic", "Instrumental"});
  }
  {
    XaresTask& t = add("gtzan_genre", "GTZAN Genre", "GTZAN", 100, "14722472");
    t.folds = make_folds(0, 10);
    t.shard_template = "gtzan_fold_{}_0000000.tar";
    classes(t, "genre",
            {"blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock"});
  }
  {
    XaresTask& t = add("maestro", "MAESTRO", "MT", 65, "14858022");
    t.kind = XaresKind::frame;
    t.metric = "segmentf1_micro";
    t.batch_size = 1;  // long pieces: no padding to the longest
    t.epochs = 50;
    t.knn = false;
    t.pos_weight = 10;
    t.segment_seconds = 0.1;
    splits(t, "maestro_train", "maestro_valid", "maestro_test");
    classes(t, "", numbers(21, 107));  // piano keys A0..B7 -> 0..86
    t.numeric_labels = true;
    t.label_rule = XaresLabelRule::note_events;
  }
  {
    XaresTask& t = add("nsynthinstument", "NSynth-Instruments", "NSynth", 2000, "14725174");
    splits(t, "nsynth_train", "nsynth_valid", "nsynth_test");
    classes(t, "instrument_family_str",
            {"guitar", "bass", "organ", "keyboard", "vocal", "string", "reed", "flute", "mallet", "brass",
             "synth_lead"});
  }
  {
    XaresTask& t = add("clotho", "Clotho", "Clo", 1045, "14856454");
    t.kind = XaresKind::contrastive;
    t.metric = "recallatk_r1";
    t.batch_size = 128;
    t.crop_seconds = 30;
    t.epochs = 20;
    t.knn = false;
    // X-ARES' own comment: "Worst naming scheme in a dataset" (test is Clotho's validation set).
    splits(t, "clotho_development", "clotho_evaluation", "clotho_validation");
    t.label_rule = XaresLabelRule::captions;
  }
  {
    XaresTask& t = add("desed", "DESED", "DES", 1153, "14808180");
    t.kind = XaresKind::frame;
    t.metric = "segmentf1_macro";
    t.knn = false;
    t.segment_seconds = 1.0;
    t.frame_label_seconds = 10;
    splits(t, "wds-audio-train", "wds-audio-eval", "wds-audio-eval");  // validates on the test set
    classes(t, "",
            {"Cat", "Speech", "Running_water", "Dishes", "Electric_shaver_toothbrush", "Vacuum_cleaner",
             "Blender", "Alarm_bell_ringing", "Dog", "Frying"});
    t.label_rule = XaresLabelRule::sound_events;
  }
  {
    XaresTask& t = add("esc50", "ESC-50", "ESC", 400, "14614287");
    t.folds = make_folds(1, 5);
    t.shard_template = "wds-audio-fold-{}-*.tar";
    t.label_rule = XaresLabelRule::class_index;
    t.label_field = "label";
    t.output_dim = 50;
  }
  {
    XaresTask& t = add("urbansound8k", "UrbanSound 8k", "Urb", 873, "14722683");
    t.folds = make_folds(1, 10);
    t.shard_template = "urbansound_fold{}_0000000.tar";
    classes(t, "soundevent",
            {"air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
             "gun_shot", "jackhammer", "siren", "street_music"});
  }

  // The other public tasks.
  {
    XaresTask& t = add("asvspoof2015", "ASV2015", "", 2000, "14718430");
    t.batch_size = 64;
    t.epochs = 5;
    splits(t, "asvspoof_train", "asvspoof_valid", "asvspoof_eval");
    classes(t, "binary_spoof", {"human", "spoof"});
  }
  {
    XaresTask& t = add("fsd50k", "FSD50k", "", 2000, "14868441");
    t.kind = XaresKind::multilabel;
    t.metric = "mAP";
    t.batch_size = 64;
    t.crop_seconds = 10;  // of clips up to 30 s
    t.knn = false;
    splits(t, "fsd50k_train", "fsd50k_validation", "fsd50k_eval");
    classes(t, "soundevent", lines(kFsd50k));
    t.label_rule = XaresLabelRule::class_name_list;
  }
  {
    XaresTask& t = add("fsdkaggle2018", "FSD18-Kaggle", "", 1600, "14725117");
    t.batch_size = 64;
    t.epochs = 3;
    t.knn = false;
    splits(t, "fsd18_train", "fsd18_test", "fsd18_test");
    classes(
        t, "sound",
        words(
            "Hi-hat Saxophone Trumpet Glockenspiel Cello Knock Gunshot_or_gunfire Clarinet Computer_keyboard "
            "Keys_jangling Snare_drum Writing Laughter Tearing Fart Oboe Flute Cough Telephone Bark Chime "
            "Bass_drum Bus Squeak Scissors Harmonica Gong Microwave_oven Burping_or_eructation Double_bass "
            "Shatter Fireworks Tambourine Cowbell Electric_piano Meow Drawer_open_or_close Applause "
            "Acoustic_guitar Violin_or_fiddle Finger_snapping"));
  }
  {
    XaresTask& t = add("speechcommandsv1", "Speech Commands V1", "", 2000, "14722647");
    t.batch_size = 64;
    splits(t, "wds-audio-train", "wds-audio-valid", "wds-audio-test");
    classes(t, "labels",
            {"sheila", "up",     "bird",  "right", "left", "six",  "yes",   "on",   "one", "off",
             "zero",   "marvin", "seven", "wow",   "five", "down", "three", "nine", "no",  "happy",
             "cat",    "go",     "bed",   "house", "stop", "four", "tree",  "dog",  "two", "eight"});
  }
  {
    XaresTask& t = add("vocalimitations", "Vocal Imitation", "", 1867, "14862060");
    t.epochs = 20;
    t.folds = make_folds(0, 3);
    t.shard_template = "vocal_imitations_fold{:02}_0000000.tar";
    classes(t, "imitation", vocal_imitation_names());
  }
  {
    XaresTask& t = add("voxceleb1", "VoxCeleb1", "", 2000, "14811963");
    t.crop_seconds = 6;
    splits(t, "voxceleb1_train", "voxceleb1_valid", "voxceleb1_test");
    classes(t, "speakerid", voxceleb1_speakers());
  }
  {
    XaresTask& t = add("voxlingua33", "VoxLingua33", "", 1609, "14812245");
    t.batch_size = 64;
    t.crop_seconds = 10;
    splits(t, "train_subset", "dev", "dev");
    classes(t, "labels", {"uk", "zh", "nn", "hr", "nl", "fa", "el", "sv", "hy", "pl", "hu",
                          "mk", "is", "pt", "sl", "ar", "en", "lv", "ru", "az", "no", "lt",
                          "es", "tr", "fr", "de", "et", "ur", "da", "fi", "it", "ja", "sr"});
  }
  return tasks;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The id of a label value; -1 when the value names no class. Numeric label maps (LibriCount,
// MAESTRO) match JSON numbers with that integer value, as Python's dict lookup does; name maps
// match strings.
int64_t class_id(const XaresTask& task, const Json& value) {
  std::string key;
  if (task.numeric_labels) {
    if (!value.is_number() || value.is_boolean()) return -1;
    const double v = value.get<double>();
    if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 1e15) return -1;
    key = std::to_string(static_cast<int64_t>(v));
  } else {
    if (!value.is_string()) return -1;
    key = value.get<std::string>();
  }
  const auto it = std::find(task.class_names.begin(), task.class_names.end(), key);
  return it == task.class_names.end() ? -1 : static_cast<int64_t>(it - task.class_names.begin());
}

// A JSON value as it reads in a one-line error, cut short.
std::string shown(const Json& value) {
  std::string s = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

double seconds(const Json& item, const char* field, const std::string& fail) {
  const auto it = item.find(field);
  if (it == item.end()) throw Error(fail + " has no '" + field + "'");
  if (!it->is_number())
    throw Error(fail + "'s '" + field + "' is " + shown(*it) + ", not a number of seconds");
  return it->get<double>();
}

}  // namespace

const char* xares_kind_name(XaresKind kind) {
  switch (kind) {
    case XaresKind::clip: return "clip";
    case XaresKind::multilabel: return "multilabel";
    case XaresKind::frame: return "frame";
    case XaresKind::contrastive: return "contrastive";
    case XaresKind::asr: return "asr";
  }
  return "?";
}

std::vector<std::string> XaresTask::splits() const {
  if (!folds.empty()) return folds;
  std::vector<std::string> out;
  for (const std::string& s : {train_split, valid_split, test_split})
    if (!s.empty() && std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  return out;
}

std::string XaresTask::shard_pattern(const std::string& split_or_fold) const {
  const std::vector<std::string> known = splits();
  if (std::find(known.begin(), known.end(), split_or_fold) == known.end())
    throw Error("X-ARES task '" + name + "' has no " + (folds.empty() ? "split" : "fold") + " '" +
                split_or_fold + "' (" + join(known, ", ") + ")");
  std::string out = shard_template;
  if (const std::size_t at = out.find("{:02}"); at != std::string::npos) {
    const std::string padded =
        split_or_fold.size() < 2 ? std::string(2 - split_or_fold.size(), '0') + split_or_fold : split_or_fold;
    return out.replace(at, 5, padded);
  }
  if (const std::size_t at = out.find("{}"); at != std::string::npos) out.replace(at, 2, split_or_fold);
  return out;
}

std::vector<std::string> XaresTask::shards(const std::string& data_root,
                                           const std::string& split_or_fold) const {
  return data::glob_shards((std::filesystem::path(data_root) / name).string(), shard_pattern(split_or_fold));
}

XaresTarget XaresTask::target(const std::string& json_text, const std::string& where) const {
  const std::string fail = where + ": X-ARES task '" + name + "': its label JSON";
  Json json;
  try {
    json = Json::parse(json_text);
  } catch (const std::exception& e) {
    throw Error(fail + " does not parse: " + first_line(e.what()));
  }
  XaresTarget out;
  // The value of label_field in a JSON object.
  const auto field = [&]() -> const Json& {
    if (!json.is_object())
      throw Error(fail + " is " + shown(json) + ", not an object with '" + label_field + "'");
    const auto it = json.find(label_field);
    if (it == json.end()) throw Error(fail + " has no field '" + label_field + "'");
    return *it;
  };
  const auto unknown = [&](const Json& value, const std::string& field_name) {
    return Error(where + ": X-ARES task '" + name + "': label " + shown(value) + " in field '" + field_name +
                 "' is not one of its " + std::to_string(class_names.size()) + " classes");
  };
  switch (label_rule) {
    case XaresLabelRule::class_name: {
      const Json& v = field();
      out.label = class_id(*this, v);
      if (out.label < 0) throw unknown(v, label_field);
      break;
    }
    case XaresLabelRule::class_name_or_unknown: {
      const Json& v = field();
      if (v.is_structured()) throw Error(fail + "'s '" + label_field + "' is " + shown(v) + ", not a label");
      out.label = class_id(*this, v);
      break;
    }
    case XaresLabelRule::class_index: {
      const Json& v = field();
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= output_dim)
        throw Error(where + ": X-ARES task '" + name + "': label " + shown(v) + " in field '" + label_field +
                    "' is not a class id in [0, " + std::to_string(output_dim) + ")");
      out.label = v.get<int64_t>();
      break;
    }
    case XaresLabelRule::male_female: {
      const Json& v = field();
      out.label = v.is_string() && v.get<std::string>() == "M" ? 0 : 1;
      break;
    }
    case XaresLabelRule::class_name_list: {
      const Json& v = field();
      if (!v.is_string()) throw Error(fail + "'s '" + label_field + "' is " + shown(v) + ", not a ';' list");
      for (const std::string& part : split(v.get<std::string>(), ';')) {
        const int64_t id = class_id(*this, Json(part));
        if (id < 0) throw unknown(Json(part), label_field);
        out.labels.push_back(id);
      }
      std::sort(out.labels.begin(), out.labels.end());
      out.labels.erase(std::unique(out.labels.begin(), out.labels.end()), out.labels.end());
      break;
    }
    case XaresLabelRule::sound_events:
    case XaresLabelRule::note_events: {
      const bool notes = label_rule == XaresLabelRule::note_events;
      if (!json.is_array())
        throw Error(fail + " is " + shown(json) + ", not a list of " + (notes ? "notes" : "events"));
      // MAESTRO's target runs to the last note's end: a piece without notes has no length.
      if (notes && json.empty()) throw Error(fail + " lists no notes");
      for (std::size_t i = 0; i < json.size(); ++i) {
        const Json& item = json[i];
        const std::string at = fail + "'s item " + std::to_string(i);
        if (!item.is_object()) throw Error(at + " is " + shown(item) + ", not an object");
        const double onset = seconds(item, notes ? "start" : "onset", at);
        const double offset = seconds(item, notes ? "end" : "offset", at);
        const char* label_key = notes ? "note" : "label";
        const auto it = item.find(label_key);
        if (it == item.end()) throw Error(at + " has no '" + label_key + "'");
        if (notes) {
          const int64_t id = class_id(*this, *it);
          if (id < 0) throw unknown(*it, "note");
          out.events.push_back({onset, offset, id});
          continue;
        }
        if (!it->is_string()) throw Error(at + "'s 'label' is " + shown(*it) + ", not a ',' list of classes");
        for (const std::string& part : split(it->get<std::string>(), ',')) {
          const int64_t id = class_id(*this, Json(part));
          if (id < 0) throw unknown(Json(part), "label");
          out.events.push_back({onset, offset, id});
        }
      }
      break;
    }
    case XaresLabelRule::captions: {
      if (!json.is_object()) throw Error(fail + " is " + shown(json) + ", not an object of captions");
      for (const auto& [key, value] : json.items()) {
        if (!value.is_string())
          throw Error(fail + "'s caption '" + key + "' is " + shown(value) + ", not a string");
        out.captions.push_back(value.get<std::string>());
      }
      break;
    }
    case XaresLabelRule::transcript: {
      const Json& v = field();
      if (!v.is_string())
        throw Error(fail + "'s '" + label_field + "' is " + shown(v) + ", not a transcript");
      out.transcript = v.get<std::string>();
      break;
    }
  }
  return out;
}

const std::vector<XaresTask>& xares_tasks() {
  static const std::vector<XaresTask> tasks = make_tasks();
  return tasks;
}

const XaresTask& xares_task(const std::string& name_or_column) {
  const auto& tasks = xares_tasks();
  for (const XaresTask& t : tasks)
    if (t.name == name_or_column || t.formal_name == name_or_column ||
        (!t.column.empty() && t.column == name_or_column))
      return t;
  const std::string wanted = lower(name_or_column);
  for (const XaresTask& t : tasks)
    if (lower(t.name) == wanted || lower(t.formal_name) == wanted ||
        (!t.column.empty() && lower(t.column) == wanted))
      return t;
  std::string known;
  for (const XaresTask& t : tasks)
    known += (known.empty() ? "" : ", ") + t.name + (t.column.empty() ? "" : " (" + t.column + ")");
  throw Error("unknown X-ARES task '" + name_or_column + "' (tasks: " + known + ")");
}

std::vector<std::string> xares_table2_tasks() {
  std::vector<std::string> out;
  for (const XaresTask& t : xares_tasks())
    if (!t.column.empty()) out.push_back(t.name);
  return out;
}

}  // namespace losatok::eval
